// Builds the browser app into dist/ (`npm run build`; `make frontend` runs it when sources
// change):
//   dist/index.html       the app's page, served at / and /w/<id>
//   dist/sandbox.html     the page that HTML, SVG and widget outputs render in (src/outputs/sandbox.js)
//   dist/assets/widgets-<hash>.js, .css  the ipywidgets manager that sandbox.html loads for a
//                         widget (src/widgets/frame.js), with the controls' styles and fonts
//   dist/assets/app.js    src/main.js and everything it imports, bundled and minified
//   dist/assets/app.css   the styles it imports (KaTeX's too; its fonts are beside it)
//   dist/assets/theme.js  src/theme-boot.js: a classic script that index.html runs in <head>,
//                         so the chosen theme is on <html> before the first paint
// The asset URLs in index.html carry a hash of their content, so a browser never runs a
// stale app.js after an upgrade. Nothing is fetched from elsewhere at run time.
import { createHash } from "node:crypto";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { build } from "esbuild";

const dist = new URL("./dist/", import.meta.url);
await rm(dist, { recursive: true, force: true });
await mkdir(new URL("assets/", dist), { recursive: true });

await build({
  entryPoints: { app: "src/main.js" },
  outdir: "dist/assets",
  bundle: true,
  format: "esm",
  target: ["es2022"],
  minify: true,
  sourcemap: true,
  legalComments: "linked",
  logLevel: "warning",
  // KaTeX's fonts, which its CSS names: copied beside app.css with content-hashed names
  loader: { ".woff2": "file", ".woff": "file", ".ttf": "file" },
  assetNames: "[name]-[hash]",
});

// The theme, before the first paint: a classic script (not a module, which would run only
// once the page is parsed), small, in index.html's <head>.
await build({
  entryPoints: { theme: "src/theme-boot.js" },
  outdir: "dist/assets",
  bundle: true,
  format: "iife",
  target: ["es2022"],
  minify: true,
  logLevel: "warning",
});

// The widgets bundle (src/widgets/frame.js: the ipywidgets HTML manager with jQuery, lodash,
// Backbone and the controls' CSS and fonts), loaded only by output frames that show a widget,
// so the app's own bundle does not grow. A classic script (IIFE), as the frame's opaque origin
// could load a module script only with CORS. ipywidgets 7's models, which the manager would
// load for old kernels, are left out: this app speaks ipywidgets 8's protocol.
const widgets = await build({
  entryPoints: { widgets: "src/widgets/frame.js" },
  outdir: "dist/assets",
  entryNames: "[name]-[hash]",
  bundle: true,
  format: "iife",
  target: ["es2022"],
  minify: true,
  sourcemap: true,
  legalComments: "linked",
  logLevel: "warning",
  metafile: true,
  loader: { ".woff2": "file", ".woff": "file", ".ttf": "file", ".eot": "file", ".svg": "file" },
  assetNames: "[name]-[hash]",
  define: { "process.env.NODE_ENV": '"production"' },
  plugins: [leaveOut(/^@jupyter-widgets\/(base7|controls7)(\/|$)/)],
});
const outputs = Object.keys(widgets.metafile.outputs).map((path) => path.split("/").pop());
const widgetsJs = outputs.find((name) => /^widgets-.*\.js$/.test(name));
const widgetsCss = outputs.find((name) => /^widgets-.*\.css$/.test(name));

const hash = createHash("sha256");
for (const name of ["app.js", "app.css", "theme.js"])
  hash.update(await readFile(new URL(`assets/${name}`, dist)));
const version = hash.digest("hex").slice(0, 12);
const index = await readFile(new URL("./static/index.html", import.meta.url), "utf8");
await writeFile(new URL("index.html", dist), index.replaceAll("%VERSION%", version));
const sandbox = await readFile(new URL("./static/sandbox.html", import.meta.url), "utf8");
await writeFile(
  new URL("sandbox.html", dist),
  sandbox.replaceAll("%WIDGETS_JS%", widgetsJs).replaceAll("%WIDGETS_CSS%", widgetsCss),
);
console.log(`built dist/ (version ${version})`);

/** An esbuild plugin: imports matching `filter` resolve to an empty module. */
function leaveOut(filter) {
  return {
    name: "leave-out",
    setup(builder) {
      builder.onResolve({ filter }, (args) => ({ path: args.path, namespace: "left-out" }));
      builder.onLoad({ filter: /.*/, namespace: "left-out" }, () => ({ contents: "module.exports = {};" }));
    },
  };
}
