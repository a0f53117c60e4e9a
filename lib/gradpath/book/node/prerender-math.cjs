// Typeset TeX to MathJax CHTML once, at build time (gradpath.book.mathrender runs this).
//
// Reads JSON from stdin: {"modules": "<node_modules folder>", "fontURL": "<url>",
//                         "items": [{"tex": "...", "display": true}, ...]}
//                         ("scale": the formulas' font size relative to the text, optional)
// Writes JSON to stdout: {"html": ["<mjx-container ...>", ...], "errors": [message or null, ...],
//                         "css": "<the CHTML style sheet for every item>", "version": "3.2.2"}
//
// The output is what MathJax's own tex-chtml.js would put in the page: the same TeX input (every
// TeX package, as tex-chtml.js autoloads them), the same CHTML output and fonts, and the same
// assistive MathML beside each formula for screen readers (mjx-assistive-mml). Nothing is
// fetched: mathjax-full comes from the npm registry once (`make math-tools`).
"use strict";

const path = require("path");

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on("data", (c) => chunks.push(c));
    process.stdin.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    process.stdin.on("error", reject);
  });
}

async function main() {
  const request = JSON.parse(await readStdin());
  const root = path.resolve(request.modules, "mathjax-full", "js");
  const req = (p) => require(path.join(root, p));
  const {mathjax} = req("mathjax.js");
  const {TeX} = req("input/tex.js");
  const {CHTML} = req("output/chtml.js");
  const {liteAdaptor} = req("adaptors/liteAdaptor.js");
  const {RegisterHTMLHandler} = req("handlers/html.js");
  const {AssistiveMmlHandler} = req("a11y/assistive-mml.js");
  const {AllPackages} = req("input/tex/AllPackages.js");
  const version = req("components/version.js").VERSION;

  const adaptor = liteAdaptor();
  AssistiveMmlHandler(RegisterHTMLHandler(adaptor));
  // "noerrors" and "noundefined" would turn TeX errors into red text in the page; without them
  // an error reaches formatError, which reports it (the build then fails with the formula).
  const skip = ["noerrors", "noundefined", "bussproofs"];
  const packages = AllPackages.filter((p) => skip.indexOf(p) < 0);
  const tex = new TeX({packages: packages, formatError: (jax, err) => {
    throw err;
  }});
  const chtml = new CHTML({fontURL: request.fontURL, adaptiveCSS: true});
  const doc = mathjax.document("", {InputJax: tex, OutputJax: chtml});

  const html = [];
  const errors = [];
  const em = request.em || 16, ex = request.ex || 8, width = request.containerWidth || 80 * 16;
  const scale = request.scale || 1;
  for (const item of request.items) {
    try {
      const node = doc.convert(item.tex, {display: !!item.display, em: em, ex: ex,
                                          containerWidth: width, scale: scale});
      html.push(adaptor.outerHTML(node));
      errors.push(null);
    } catch (err) {
      html.push(null);
      errors.push(String((err && err.message) || err));
    }
  }
  const css = adaptor.textContent(chtml.styleSheet(doc));
  process.stdout.write(JSON.stringify({html: html, errors: errors, css: css, version: version}));
}

main().catch((err) => {
  process.stderr.write(String((err && err.stack) || err) + "\n");
  process.exit(1);
});
