/**
 * Opening a worksheet: what `worksheet.get` says of its cells' runs and outputs, the session's
 * state, and the feed cursor to follow the session from.
 *
 * The cells themselves (their order, types and text) are the worksheet's document, which the
 * page synchronises over the WebSocket (document.js); what this reads is what the document
 * does not hold: each cell's saved outputs and last run (by cell id), the title and the role.
 *
 * Outputs need care. The server saves each run's outputs from the feed a moment after they
 * appear there, and the cell does not say up to which cursor. So read the cursor (C1), the
 * worksheet, the cursor again (C2): the saved outputs of a run that is going on, or ended
 * moments ago, may lack its last messages, or (if it printed in (C1, C2]) hold some that come
 * after C1, and following the feed from C1 could lose or repeat output. Those runs are
 * `rebuild`: the page replays the feed from its start (a feed keeps its last 10,000 messages)
 * and draws their outputs afresh from their first message. An idle worksheet, the usual case,
 * needs no replay.
 *
 * The session's state (`session.info`: the running run and the queue) is read once, after C1.
 * From then on the feed says every change of it: `cell_run` when the session takes a run,
 * `busy` when it starts, `execute_reply` when it ends. A run that changed state between C1 and
 * the read is seen twice (in `info` and on the feed), which does no harm; read before C1, a
 * change in between would be seen by neither.
 */
import { call } from "../api.js";

const RECENT_MS = 120_000; // a run asked for this recently may not be saved to its end yet

/**
 * Resolves to {sheet, info, cursor, rebuild}: the worksheet with its cells, the session's
 * state (`session.info`), the cursor to follow the feed from, and the msg_ids of runs whose
 * outputs must be rebuilt from the feed. `session` may be given if known (saves a read).
 */
export async function loadSnapshot(id, session = null) {
  if (!session) session = (await call("worksheet.get", { id })).session;
  const before = (await call("feed.cursor", { session })).cursor;
  const info = await call("session.info", { session }); // after C1: see above
  const sheet = await call("worksheet.get", { id });
  const after = (await call("feed.cursor", { session })).cursor;
  const between = after > before ? await readFeed(session, before, after) : [];
  return { sheet, info, cursor: before, rebuild: unfinishedRuns(sheet.cells, info, between) };
}

/** The runs of `cells` whose saved outputs may not be complete and exact (see above). */
function unfinishedRuns(cells, info, between) {
  const runs = new Set(cells.map((cell) => cell.run_msg_id).filter(Boolean));
  const candidates = [
    ...between.map((m) => m.parent_header?.msg_id),
    info.running?.msg_id,
    ...cells
      .filter((c) => c.run_at && Date.now() - Date.parse(c.run_at) < RECENT_MS)
      .map((c) => c.run_msg_id),
  ];
  return new Set(candidates.filter((msgId) => runs.has(msgId)));
}

/** The feed's messages in (`since`, `until`], page by page. */
async function readFeed(session, since, until) {
  const messages = [];
  let cursor = since;
  while (cursor < until) {
    const page = await call("feed.poll", { session, since: cursor, timeout: 0 });
    if (!page.messages.length) break;
    messages.push(...page.messages);
    cursor = page.cursor;
  }
  return messages;
}
