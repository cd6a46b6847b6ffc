/** How numbers, durations and times are written for people, in one place. */

/** "1,234" for 1234: counts shown to people. */
export function formatCount(n) {
  return n.toLocaleString("en-US");
}

/** "4 ms", "1.2 s", "12 s", "3 min 5 s": how long something took. */
export function formatDuration(ms) {
  if (ms < 0 || !Number.isFinite(ms)) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  const minutes = Math.floor(ms / 60_000);
  return `${minutes} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** "14:03" today, "2 Mar 14:03" otherwise: when something happened. */
export function formatTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const time = date.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
  if (date.toDateString() === new Date().toDateString()) return time;
  return `${date.toLocaleDateString("en-GB", { day: "numeric", month: "short" })} ${time}`;
}

const BYTE_UNITS = ["bytes", "KB", "MB", "GB", "TB"];

/** "812 bytes", "1.4 MB", "12 GB": sizes of files (powers of 1024, as file managers show them). */
export function formatBytes(n) {
  if (!Number.isFinite(n) || n < 0) return "";
  let unit = 0;
  while (n >= 1024 && unit < BYTE_UNITS.length - 1) {
    n /= 1024;
    unit += 1;
  }
  if (unit === 0) return `${n} ${n === 1 ? "byte" : "bytes"}`;
  return `${n.toFixed(n < 10 ? 1 : 0)} ${BYTE_UNITS[unit]}`;
}
