// Builds the browser app into dist/ (`npm run build`; `make frontend` runs it when sources
// change):
//   dist/index.html       the app's page, served at / and /w/<id>
//   dist/sandbox.html     the page that HTML and SVG outputs render in (see src/outputs/sandbox.js)
//   dist/assets/app.js    src/main.js and everything it imports, bundled and minified
//   dist/assets/app.css   the styles it imports (KaTeX's too; its fonts are beside it)
// The asset URLs in index.html carry a hash of their content, so a browser never runs a
// stale app.js after an upgrade. Nothing is fetched from elsewhere at run time.
import { createHash } from "node:crypto";
import { mkdir, readFile, rm, writeFile, copyFile } from "node:fs/promises";
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

const hash = createHash("sha256");
for (const name of ["app.js", "app.css"]) hash.update(await readFile(new URL(`assets/${name}`, dist)));
const version = hash.digest("hex").slice(0, 12);
const index = await readFile(new URL("./static/index.html", import.meta.url), "utf8");
await writeFile(new URL("index.html", dist), index.replaceAll("%VERSION%", version));
await copyFile(new URL("./static/sandbox.html", import.meta.url), new URL("sandbox.html", dist));
console.log(`built dist/ (version ${version})`);
