/**
 * Opening a worksheet: its cells as saved, and the feed cursor they correspond to.
 *
 * The page shows the worksheet as `worksheet.get` returns it, then follows its session's
 * feed for what changes after. For that to be exact, the cells must be those of one feed
 * cursor: a cell moved between the two reads, replayed on a list that already has the move,
 * could land in the wrong place. So: read the cursor (C1), the worksheet, the cursor again
 * (C2). Cell creations, moves and deletions are only ever announced on the feed, so if none
 * was announced in (C1, C2], the worksheet read is the worksheet at C1, and following the
 * feed from C1 is exact; otherwise read again.
 *
 * Outputs need one more care. The server saves each run's outputs from the feed a moment
 * after they appear there, and the cell does not say up to which cursor. So the saved
 * outputs of a run that is going on, or ended moments ago, may lack its last messages, or
 * (if it printed in (C1, C2]) hold some that come after C1: following the feed from C1 could
 * lose or repeat output. Those runs are `rebuild`: the page replays the feed from its start
 * (a feed keeps its last 10,000 messages) and draws their outputs afresh from their first
 * message. An idle worksheet, the usual case, needs no replay.
 *
 * The session's state (`session.info`: the running run and the queue) is read once, after C1.
 * From then on the feed says every change of it: `cell_run` when the session takes a run,
 * `busy` when it starts, `execute_reply` when it ends. A run that changed state between C1 and
 * the read is seen twice (in `info` and on the feed), which does no harm; read before C1, a
 * change in between would be seen by neither.
 */
import { call } from "../api.js";

const STRUCTURE = new Set(["cell_created", "cell_moved", "cell_deleted"]);
const ATTEMPTS = 5;
const RECENT_MS = 120_000; // a run asked for this recently may not be saved to its end yet

/**
 * Resolves to {sheet, info, cursor, rebuild}: the worksheet with its cells, the session's
 * state (`session.info`), the cursor to follow the feed from, and the msg_ids of runs whose
 * outputs must be rebuilt from the feed. `session` may be given if known (saves a read).
 */
export async function loadSnapshot(id, session = null) {
  let sheet = null;
  if (!session) {
    sheet = await call("worksheet.get", { id });
    session = sheet.session;
  }
  for (let attempt = 1; ; attempt++) {
    const before = (await call("feed.cursor", { session })).cursor;
    const info = await call("session.info", { session }); // after C1: see above
    sheet = await call("worksheet.get", { id });
    const after = (await call("feed.cursor", { session })).cursor;
    const between = after > before ? await readFeed(session, before, after) : [];
    const moved = between.some((m) => STRUCTURE.has(m.header.msg_type));
    if (!moved || attempt === ATTEMPTS) {
      return { sheet, info, cursor: before, rebuild: unfinishedRuns(sheet.cells, info, between) };
    }
  }
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
