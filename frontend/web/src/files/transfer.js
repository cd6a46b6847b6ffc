/**
 * Moving file contents between the browser and a worksheet's workspace: the streaming HTTP
 * endpoints of the web service (docs/api.md, "Files"), `GET` and `PUT /files/<worksheet>/<path>`.
 *
 * Uploads go with XMLHttpRequest, the one browser API that reports how much of a request body
 * has been sent (fetch does not), so the panel can draw a progress bar. A file larger than one
 * chunk goes in chunks, each a `PUT` with `Content-Range: bytes <start>-<end>/<total>` that
 * the server appends to the partial file it keeps beside the target; when a chunk is lost (the
 * connection dropped, a gateway gave up), the upload asks the server how much it has
 * (`Content-Range: bytes *\/<total>` with no body: 308 with `Range: bytes=0-<n-1>`, or no
 * Range for nothing) and goes on from there, so a dropped connection costs one chunk at most.
 * The server renames the partial file into place with the last chunk.
 *
 * Authentication is the session cookie, as for `call` (api.js); a `PUT` carries the page's
 * Origin, which the server requires of cookie-authenticated requests.
 */

const CHUNK_BYTES = 8 * 1024 * 1024; // one request's body; a dropped connection loses at most this
const RETRIES = 5; // lost chunks in a row before the upload gives up
const RETRY_WAIT_MS = [250, 500, 1000, 2000, 4000];
// 0: no answer at all (XHR's status then); 409: the server's copy is not where this page
// thought (the request a connection dropped under still holds it, or kept more or less)
const RETRYABLE = new Set([0, 409, 502, 503, 504]);

/** The URL of `path` (workspace-relative, "/"-separated) in `worksheet`'s workspace. */
export function fileUrl(worksheet, path) {
  const parts = path.split("/").map(encodeURIComponent);
  return `/files/${encodeURIComponent(worksheet)}/${parts.join("/")}`;
}

/** An upload the server refused, or one that failed for good; `message` is for people. */
export class TransferError extends Error {
  constructor(message, status = 0) {
    super(message);
    this.name = "TransferError";
    this.status = status;
  }
}

/**
 * Put `file` (a File or Blob) at `path` in `worksheet`'s workspace, replacing what is there.
 * `onProgress(sent, total)` is called as bytes leave; `signal` (an AbortSignal) cancels.
 * Resolves when the file is in place; rejects with a `TransferError` (or an AbortError).
 */
export async function upload(worksheet, path, file, { onProgress = () => {}, signal } = {}) {
  const url = fileUrl(worksheet, path);
  const total = file.size;
  if (total <= CHUNK_BYTES) {
    await withRetries(() => put(url, file, {}, (sent) => onProgress(sent, total), signal), signal);
    onProgress(total, total);
    return;
  }
  let start = 0;
  let lost = 0;
  while (start < total) {
    const end = Math.min(start + CHUNK_BYTES, total);
    const range = { "Content-Range": `bytes ${start}-${end - 1}/${total}` };
    const chunkStart = start;
    try {
      await put(url, file.slice(start, end), range, (sent) => onProgress(chunkStart + sent, total), signal);
      start = end;
      lost = 0;
    } catch (error) {
      if (!isRetryable(error) || lost >= RETRIES) throw error;
      await wait(RETRY_WAIT_MS[lost++], signal);
      start = await withRetries(() => received(url, total, signal), signal); // what arrived
      onProgress(start, total);
    }
  }
  onProgress(total, total);
}

/** How many bytes of an upload of `total` bytes the server holds (0: none, or the upload
 * completed and its answer was lost: it is sent again). */
async function received(url, total, signal) {
  const answer = await put(url, new Blob([]), { "Content-Range": `bytes */${total}` }, () => {}, signal);
  const match = /^bytes=0-(\d+)$/.exec(answer.range ?? "");
  return match ? Number(match[1]) + 1 : 0;
}

async function withRetries(attempt, signal) {
  for (let lost = 0; ; lost++) {
    try {
      return await attempt();
    } catch (error) {
      if (!isRetryable(error) || lost >= RETRIES) throw error;
      await wait(RETRY_WAIT_MS[lost], signal);
    }
  }
}

function isRetryable(error) {
  return error instanceof TransferError && RETRYABLE.has(error.status);
}

/** One PUT; resolves to {status, range} for a 2xx or a 308, else rejects with TransferError. */
function put(url, body, headers, onSent, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    xhr.withCredentials = true;
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => onSent(event.loaded);
    const abort = () => xhr.abort();
    signal?.addEventListener("abort", abort, { once: true });
    const settle = (fn) => {
      signal?.removeEventListener("abort", abort);
      fn();
    };
    xhr.onload = () =>
      settle(() => {
        const { status } = xhr;
        if ((status >= 200 && status < 300) || status === 308) {
          resolve({ status, range: xhr.getResponseHeader("Range") });
        } else {
          reject(new TransferError(refusal(xhr), status));
        }
      });
    xhr.onerror = () => settle(() => reject(new TransferError("the connection to the server was lost", 0)));
    xhr.ontimeout = xhr.onerror;
    xhr.onabort = () => settle(() => reject(signal?.reason ?? new DOMException("cancelled", "AbortError")));
    xhr.send(body);
  });
}

/** The server's message for a refused request: its JSON error's message, else its text. */
function refusal(xhr) {
  const text = xhr.responseText ?? "";
  try {
    const body = JSON.parse(text);
    const message = body?.error?.message ?? body?.message;
    if (message) return String(message);
  } catch {
    // not JSON: the text itself, if short
  }
  const plain = text.trim();
  return plain && plain.length < 300 ? plain : `the server answered HTTP ${xhr.status}`;
}

function wait(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}

/**
 * The first `limit` bytes of `path` (a preview needs no more), as {bytes, complete}: the
 * body is read as a stream and cancelled at `limit`, so a huge file is never fetched whole.
 */
export async function readHead(worksheet, path, limit) {
  let response;
  try {
    response = await fetch(fileUrl(worksheet, path), {
      credentials: "same-origin",
      headers: { Range: `bytes=0-${limit - 1}` },
    });
  } catch (error) {
    throw new TransferError(`the server did not answer (${error.message})`);
  }
  if (!response.ok) {
    let message = `the server answered HTTP ${response.status}`;
    try {
      const body = await response.json();
      message = body?.error?.message ?? body?.message ?? message;
    } catch {
      // not JSON
    }
    throw new TransferError(message, response.status);
  }
  const reader = response.body.getReader();
  const parts = [];
  let size = 0;
  let complete = true;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    size += value.length;
    if (size >= limit) {
      complete = false;
      await reader.cancel();
      break;
    }
  }
  const bytes = new Uint8Array(Math.min(size, limit));
  let at = 0;
  for (const part of parts) {
    const take = part.subarray(0, bytes.length - at);
    bytes.set(take, at);
    at += take.length;
  }
  const total = totalOf(response);
  return { bytes, complete: complete && (total === null || total <= bytes.length) };
}

/** The whole file's size from a 206's Content-Range, or a 200's Content-Length; null if unsaid. */
function totalOf(response) {
  const range = /\/(\d+)$/.exec(response.headers.get("Content-Range") ?? "");
  if (range) return Number(range[1]);
  const length = response.headers.get("Content-Length");
  return response.status === 200 && length !== null ? Number(length) : null;
}
