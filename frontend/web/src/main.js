/**
 * The cellbus browser app. It talks to the server only through the JSON-RPC API (api.js) and
 * the feed WebSocket (feed.js), like any other client. Where things are:
 *
 *   shell.js         who is signed in, the header, which page shows (router.js: the URLs)
 *   views/           the login page and the worksheet list
 *   worksheet/       one worksheet, live: page.js (the feed), document.js (the Y.Doc, its
 *                    sync and awareness), cells.js (order), cell.js (a cell), runs.js (which
 *                    run is whose), snapshot.js (opening it exactly), sheet-bar.js (title,
 *                    session, tools)
 *   editor.js        CodeMirror 6 bound to a cell's Y.Text, with the notebook's keys
 *   markdown.js      Markdown with math to sanitised HTML (Markdown cells and outputs)
 *   outputs/         drawing outputs: area.js, stream.js (huge streams), mime.js, ansi.js,
 *                    sandbox.js (HTML and SVG from user code, in a sandboxed frame)
 *   dialogs/         dialog.js, share.js
 *   styles/          the CSS, one file per part of the page
 */
import "./styles/app.css";
import { App } from "./shell.js";

new App(document.getElementById("app")).start();
