// Builds the browser terminal's two scripts from jupybot/terminal/static/ (ES modules) and the
// xterm.js packages of package.json, into static/vendor/ (git-ignored; page.py serves them):
//   page.js   the page's script (terminal.js), loaded by GET /
//   embed.js  the <jupybot-terminal> element (embed.js), served as /embed.js
// Run by scripts/install-web-assets (`node esbuild.config.js`); `--watch` rebuilds on change.
import { readFileSync } from "node:fs";
import * as esbuild from "esbuild";

const static_ = "jupybot/terminal/static";
const license = readFileSync("node_modules/@xterm/xterm/LICENSE", "utf8").trim();

const common = {
  bundle: true,
  minify: true,
  format: "iife",
  // Chromium, Firefox and Safari of the last few years: what xterm.js itself supports.
  target: ["es2020"],
  loader: { ".css": "text" },  // embed.js puts xterm.css in the element's shadow root
  legalComments: "none",  // xterm.js's license goes once, in the banner
  logLevel: "warning",
};

const builds = [
  { entryPoints: [`${static_}/terminal.js`], outfile: `${static_}/vendor/page.js`,
    banner: { js: `/*! jupybot's terminal page. Bundles xterm.js and its addons:\n${license.replaceAll("*/", "* /")}\n*/` } },
  { entryPoints: [`${static_}/embed.js`], outfile: `${static_}/vendor/embed.js`,
    banner: { js: `/*! jupybot /embed.js. Bundles xterm.js and its addons:\n${license.replaceAll("*/", "* /")}\n*/` } },
];

if (process.argv.includes("--watch")) {
  for (const build of builds) await (await esbuild.context({ ...common, ...build })).watch();
} else {
  await Promise.all(builds.map((build) => esbuild.build({ ...common, ...build })));
}
