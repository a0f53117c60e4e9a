/* Gradient Flow: the course's page script (gradpath.book.site adds it, deferred, to every page).
 *
 * 1. Interactive figures (gradpath.book.interactive): draws each one with the site's partial
 *    plotly bundle, loaded only when a figure comes near the screen; adds a native range input
 *    (keyboard and screen-reader friendly) that drives the figure's slider; follows the theme's
 *    light/dark switch.
 * 2. Quizzes (jupyterquiz): labels every numeric input and every answer option (math-only ones
 *    get a text name), announces feedback, adds a "Check" button and a hint to numeric questions,
 *    allows paste, and keeps the typed answer when the box is focused again.
 * 3. Math: the prose's formulas arrive typeset (gradpath.book.mathrender); MathJax is loaded
 *    only for quizzes and flashcards, when one comes near the screen. Display math that is wider
 *    than the column scrolls and can be focused to scroll by keyboard.
 *    <html data-gradpath-math> says where the page is: "prose" (the page's own formulas are
 *    typeset; quizzes and cards wait for MathJax), "loading", then "typeset" (everything).
 * 4. "Live code" (Thebe) needs mybinder.org: when it cannot be reached, say so and point to the
 *    other ways to run the chapter instead of hanging at "Loading thebe from CDN...".
 */
(function () {
  "use strict";

  var here = document.currentScript && document.currentScript.src;
  var STATIC = here ? here.replace(/gradpath\.js(\?.*)?$/, "") : "_static/";
  var PLOTLY_URL = STATIC + "gradpath-plotly.min.js";

  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  function isDark() {
    return document.documentElement.dataset.theme === "dark";
  }

  /* ------------------------------------------------------------------ interactive figures */

  var plotlyPromise = null;

  function loadPlotly() {
    if (window.Plotly) return Promise.resolve(window.Plotly);
    if (!plotlyPromise) {
      plotlyPromise = new Promise(function (resolve, reject) {
        var s = document.createElement("script");
        s.src = PLOTLY_URL;
        s.async = true;
        s.onload = function () { resolve(window.Plotly); };
        s.onerror = function () {
          plotlyPromise = null;
          reject(new Error("could not load " + PLOTLY_URL));
        };
        document.head.appendChild(s);
      });
    }
    return plotlyPromise;
  }

  function themeLayout(dark) {
    var fg = dark ? "#e3e3e3" : "#2a2a2a";
    var grid = dark ? "#3d434b" : "#e6e6e6";
    return {
      "paper_bgcolor": "rgba(0,0,0,0)",
      "plot_bgcolor": "rgba(0,0,0,0)",
      "font.color": fg,
      "title.font.color": fg,
      "legend.font.color": fg,
      "xaxis.gridcolor": grid,
      "yaxis.gridcolor": grid,
      "xaxis.zerolinecolor": grid,
      "yaxis.zerolinecolor": grid,
      "xaxis.linecolor": grid,
      "yaxis.linecolor": grid,
      "sliders[0].font.color": fg,
      "sliders[0].currentvalue.font.color": fg,
      "sliders[0].tickcolor": fg,
      "sliders[0].bgcolor": dark ? "#4a5058" : "#f8fafc",
      "sliders[0].activebgcolor": dark ? "#c8ccd2" : "#dbdde0",
      "sliders[0].bordercolor": dark ? "#9aa0a6" : "#bec8d9"
    };
  }

  // Traces drawn in black (the palette's last colour) become light grey in dark mode.
  function traceColors(spec, dark) {
    return spec.data.map(function (t) {
      var c = t.line && t.line.color;
      return dark && (c === "#000000" || c === "black") ? "#d0d0d0" : c;
    });
  }

  function setPath(obj, path, value) {
    var keys = path.replace(/\[(\d+)\]/g, ".$1").split(".");
    var o = obj;
    for (var i = 0; i < keys.length - 1; i++) {
      if (o[keys[i]] === undefined || o[keys[i]] === null) {
        o[keys[i]] = /^\d+$/.test(keys[i + 1]) ? [] : {};
      }
      o = o[keys[i]];
    }
    o[keys[keys.length - 1]] = value;
  }

  function restyleFigure(el) {
    if (!el._gpSpec || !window.Plotly) return;
    var dark = isDark();
    window.Plotly.relayout(el, themeLayout(dark));
    window.Plotly.restyle(el, {"line.color": traceColors(el._gpSpec, dark)});
  }

  function positionName(el) {
    var meta = (el.layout && el.layout.meta) || {};
    var name = String(meta.slider_label || "position").replace(/[\s:=]+$/, "").trim();
    return name || "position";
  }

  function addRangeInput(el) {
    var Plotly = window.Plotly;
    var slider = el.layout.sliders && el.layout.sliders[0];
    if (!slider || !slider.steps || slider.steps.length < 2) return;
    var steps = slider.steps;
    var id = el.id + "-range";
    var name = positionName(el);
    var wrap = document.createElement("div");
    wrap.className = "gradpath-range";
    var label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = name;
    var input = document.createElement("input");
    input.type = "range";
    input.id = id;
    input.min = "0";
    input.max = String(steps.length - 1);
    input.step = "1";
    var out = document.createElement("output");
    out.htmlFor = id;
    out.setAttribute("aria-hidden", "true");
    function show(i) {
      input.value = String(i);
      input.setAttribute("aria-valuetext", name + " " + steps[i].label);
      out.textContent = steps[i].label;
    }
    input.addEventListener("input", function () {
      var i = Number(input.value);
      var layout = {"sliders[0].active": i};
      var extra = steps[i].args[1] || {};
      Object.keys(extra).forEach(function (k) { layout[k] = extra[k]; });
      Plotly.update(el, steps[i].args[0], layout);
      show(i);
    });
    el.on("plotly_sliderchange", function (event) {
      var i = event && event.slider ? event.slider.active : Number(input.value);
      if (typeof i === "number" && i >= 0) show(i);
    });
    show(slider.active || 0);
    wrap.appendChild(label);
    wrap.appendChild(input);
    wrap.appendChild(out);
    el.parentNode.insertBefore(wrap, el.nextSibling);
  }

  function drawFigure(el) {
    if (el.dataset.gpState && el.dataset.gpState !== "waiting") return;
    el.dataset.gpState = "loading";
    var holder = el.parentNode.querySelector("script.gradpath-spec");
    var spec;
    try {
      spec = JSON.parse(holder.textContent);
    } catch (err) {
      el.dataset.gpState = "failed";
      el.textContent = "The interactive figure's data could not be read.";
      return;
    }
    var dark = isDark();
    var layout = spec.layout || {};
    var theme = themeLayout(dark);
    Object.keys(theme).forEach(function (k) { setPath(layout, k, theme[k]); });
    if (el.clientWidth && el.clientWidth < 560) {
      // On a phone the legend goes above the plot, so the plot keeps the width.
      setPath(layout, "legend.orientation", "h");
      setPath(layout, "legend.x", 0);
      setPath(layout, "legend.y", 1.02);
      setPath(layout, "legend.yanchor", "bottom");
      setPath(layout, "margin.r", 10);
      setPath(layout, "margin.t", 120);
      setPath(layout, "title.y", 0.98);
      setPath(layout, "title.yanchor", "top");
      setPath(layout, "title.font.size", 14);
    }
    var colors = traceColors(spec, dark);
    spec.data.forEach(function (t, i) { if (t.line) t.line.color = colors[i]; });
    loadPlotly().then(function (Plotly) {
      el.textContent = "";
      el._gpSpec = spec;
      return Plotly.newPlot(el, spec.data, layout, {responsive: true, displaylogo: false});
    }).then(function () {
      el.dataset.gpState = "drawn";
      addRangeInput(el);
    }).catch(function (err) {
      el.dataset.gpState = "failed";
      el.textContent = "The interactive figure could not be drawn (" + err.message + ").";
    });
  }

  function setUpFigures() {
    var figures = Array.prototype.slice.call(document.querySelectorAll(".gradpath-interactive"));
    if (!figures.length) return;
    figures.forEach(function (el) { el.dataset.gpState = "waiting"; });
    if (!("IntersectionObserver" in window)) {
      figures.forEach(drawFigure);
      return;
    }
    var observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        if (entry.isIntersecting) {
          observer.unobserve(entry.target);
          drawFigure(entry.target);
        }
      });
    }, {rootMargin: "800px 0px"});
    figures.forEach(function (el) { observer.observe(el); });
    new MutationObserver(function () {
      figures.forEach(function (el) { if (el.dataset.gpState === "drawn") restyleFigure(el); });
    }).observe(document.documentElement, {attributes: true, attributeFilter: ["data-theme"]});
  }

  /* ------------------------------------------------------------------ math */

  function whenMathTypeset(fn) {
    var tries = 0;
    (function wait() {
      var mj = window.MathJax;
      if (mj && mj.startup && mj.startup.promise) {
        mj.startup.promise.then(fn);
      } else if (tries++ < 600) {  // a minute: a slow link
        setTimeout(wait, 100);
      }
    })();
  }

  var TEX_WORDS = {
    alpha: "α", beta: "β", gamma: "γ", delta: "δ", epsilon: "ε", varepsilon: "ε", eta: "η",
    theta: "θ", lambda: "λ", mu: "μ", rho: "ρ", sigma: "σ", tau: "τ", phi: "φ", varphi: "φ",
    psi: "ψ", omega: "ω", Delta: "Δ", Sigma: "Σ", Pi: "Π", ell: "ℓ", partial: "∂", nabla: "∇",
    infty: "∞", cdot: "·", times: "×", le: "≤", leq: "≤", ge: "≥", geq: "≥", approx: "≈",
    neq: "≠", ne: "≠", to: "→", rightarrow: "→", sum: "Σ", prod: "Π", sqrt: "√", pm: "±",
    ldots: "…", dots: "…", cdots: "…", log: "log", exp: "exp", max: "max", min: "min",
    tanh: "tanh", quad: " ", qquad: " ", lVert: "‖", rVert: "‖", Vert: "‖", mid: "|"
  };

  // A readable text version of a TeX snippet, for an accessible name ("σ'(0) = 1/4").
  function texToText(tex) {
    var s = tex;
    for (var i = 0; i < 5; i++) {
      s = s.replace(/\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}/g, "($1)/($2)");
    }
    s = s.replace(/\\(?:left|right|big|Big|bigg|Bigg)\b/g, "")
      .replace(/\\(?:mathrm|mathbf|mathit|text|operatorname|mathcal|boldsymbol)\s*\{([^{}]*)\}/g, "$1")
      .replace(/\\([A-Za-z]+)/g, function (m, w) { return TEX_WORDS[w] !== undefined ? TEX_WORDS[w] : w; })
      .replace(/\\\|/g, "‖")
      .replace(/\\[,;:! ]/g, " ")
      .replace(/\^\{([^{}]*)\}/g, "^($1)")
      .replace(/_\{([^{}]*)\}/g, "_$1")
      .replace(/[{}]/g, "")
      .replace(/\\/g, "")
      .replace(/\(([^()\s]{1,3})\)\/\(([^()\s]{1,3})\)/g, "$1/$2")
      .replace(/\s+/g, " ")
      .trim();
    return s;
  }

  // Text of an element with its math as text: TeX from MathJax's records, or the raw source.
  function spokenText(el) {
    var clone = el.cloneNode(true);
    var mj = window.MathJax;
    var items = [];
    try {
      if (mj && mj.startup && mj.startup.document && mj.startup.document.getMathItemsWithin) {
        items = mj.startup.document.getMathItemsWithin(el);
      }
    } catch (err) { items = []; }
    var containers = clone.querySelectorAll("mjx-container");
    containers.forEach(function (c, i) {
      var tex = items[i] ? items[i].math : "";
      c.replaceWith(document.createTextNode(" " + texToText(tex) + " "));
    });
    var text = clone.textContent;
    text = text.replace(/\\\((.*?)\\\)/g, function (m, t) { return texToText(t); })
      .replace(/\$([^$]+)\$/g, function (m, t) { return texToText(t); });
    return text.replace(/\s+/g, " ").trim();
  }

  // Where MathJax is, on pages whose quizzes or flashcards build math in the browser
  // (gradpath.book.mathrender writes it; the prose's math is typeset when the site is built).
  function runtimeMath() {
    var el = document.getElementById("gradpath-mathjax");
    if (!el) return null;
    try { return JSON.parse(el.textContent); } catch (err) { return null; }
  }

  var mathRequested = false;
  function loadMathJax(spec) {
    if (mathRequested) return;
    mathRequested = true;
    document.documentElement.dataset.gradpathMath = "loading";
    window.MathJax = spec.config || {};
    var script = document.createElement("script");
    script.src = spec.src;
    script.async = true;
    document.head.appendChild(script);
    whenMathTypeset(function () {
      // The notebook's top section is excluded from MathJax's page-wide pass (MyST-NB marks it
      // mathjax_ignore and lets MathJax in only where it marks math), so quizzes and decks are
      // typeset here; jupyterquiz and jupytercards typeset what they draw later themselves.
      var boxes = Array.prototype.slice.call(
        document.querySelectorAll("[data-shufflequestions], .gp-deck"));
      var typeset = boxes.length && window.MathJax.typesetPromise
        ? window.MathJax.typesetPromise(boxes) : Promise.resolve();
      typeset.catch(function () {}).then(function () {
        proseMath();
        fixQuizMath();
        document.documentElement.dataset.gradpathMath = "typeset";  // for tests and tools
      });
    });
  }

  // Boxes that scroll sideways when their content is wider than the column (display math, wide
  // tables and outputs) must be reachable by keyboard. Whether one scrolls is a question about
  // layout; each box is asked when it comes near the screen (and again after a resize), so the
  // page never lays out everything at once just to answer it (a long task on a phone).
  var OVERFLOW_BOXES = 'mjx-container[display="true"], .pst-scrollable-table-container, ' +
    ".cell_output .output";
  var overflowObserver = null;
  function fixOverflow(box) {
    if (!(box.scrollWidth > box.clientWidth + 1) || box.hasAttribute("tabindex")) return;
    box.setAttribute("tabindex", "0");
    if (box.tagName === "MJX-CONTAINER") {
      box.classList.add("gradpath-wide-math");
    } else {
      if (!box.hasAttribute("role")) box.setAttribute("role", "region");
      if (!box.hasAttribute("aria-label")) box.setAttribute("aria-label", "scrollable table");
    }
  }
  function proseMath() {
    var boxes = document.querySelectorAll(OVERFLOW_BOXES);
    if (!("IntersectionObserver" in window)) {
      boxes.forEach(fixOverflow);
      return;
    }
    if (overflowObserver) overflowObserver.disconnect();
    overflowObserver = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        if (entry.isIntersecting) {
          overflowObserver.unobserve(entry.target);
          fixOverflow(entry.target);
        }
      });
    }, {rootMargin: "1000px 0px"});
    boxes.forEach(function (box) { overflowObserver.observe(box); });
  }

  // The page's formulas arrive typeset (gradpath.book.mathrender). MathJax itself (1.1 MB) is
  // loaded only for quizzes and flashcards, when one comes within a few screens of the reader;
  // until then they show their questions as text and work as usual.
  function setUpMath() {
    proseMath();
    var spec = runtimeMath();
    if (!spec) {
      if (document.querySelector('script[src*="mathjax/tex-chtml"]')) {
        whenMathTypeset(function () {  // a site built without mathrender: MathJax as before
          document.querySelectorAll("[data-shufflequestions]").forEach(function (q) {
            if (window.MathJax.typesetPromise) window.MathJax.typesetPromise([q]);
          });
          proseMath();
          fixQuizMath();
          document.documentElement.dataset.gradpathMath = "typeset";
        });
      } else {
        document.documentElement.dataset.gradpathMath = "typeset";
      }
      return;
    }
    document.documentElement.dataset.gradpathMath = "prose";
    var targets = Array.prototype.slice.call(
      document.querySelectorAll("[data-shufflequestions], .gp-deck"));
    if (!targets.length || !("IntersectionObserver" in window)) {
      loadMathJax(spec);
      return;
    }
    var observer = new IntersectionObserver(function (entries) {
      if (entries.some(function (e) { return e.isIntersecting; })) {
        observer.disconnect();
        loadMathJax(spec);
      }
    }, {rootMargin: "2000px 0px"});
    targets.forEach(function (el) { observer.observe(el); });
  }

  /* ------------------------------------------------------------------ quizzes */

  function fixQuizMath() {
    document.querySelectorAll(".Quiz label.MCButton").forEach(function (label) {
      // Math inside an answer must not be a second tab stop inside the option.
      label.querySelectorAll("mjx-container[tabindex]").forEach(function (c) {
        c.setAttribute("tabindex", "-1");
      });
      var input = label.querySelector("input");
      if (!input) return;
      var span = label.querySelector("span");
      var name = spokenText(span || label);
      if (name) input.setAttribute("aria-label", name);
    });
  }

  function checkNumeric(input) {
    if (typeof window.check_numeric !== "function") return;
    var value = input.value;
    window.check_numeric(input, {keyCode: 13, which: 13});
    input.value = value;
    input.dataset.gpValue = value;
  }

  function fixNumeric(input, n) {
    if (input.dataset.gpFixed) return;
    input.dataset.gpFixed = "1";
    var box = input.parentNode;
    var label = box.querySelector("label.InpLabel");
    var question = input.closest(".Quiz");
    var qText = question && question.querySelector('[id^="quizQn"]');
    if (label) {
      label.htmlFor = input.id;
      label.textContent = "Your answer:";
    } else {
      input.setAttribute("aria-label", "Your answer");
    }
    var hint = document.createElement("p");
    hint.className = "gradpath-quiz-hint";
    hint.id = input.id + "-hint";
    hint.textContent = "Type a number (for example 0.25, 1/4 or 2.5e-3), then press Enter or Check.";
    var describedBy = [hint.id];
    if (qText && qText.id) describedBy.unshift(qText.id);
    input.setAttribute("aria-describedby", describedBy.join(" "));
    input.setAttribute("autocomplete", "off");
    input.setAttribute("spellcheck", "false");
    // jupyterquiz blocks paste and empties the box on focus; keep what the reader typed.
    input.onpaste = null;
    input.addEventListener("input", function () { input.dataset.gpValue = input.value; });
    input.addEventListener("focus", function () {
      if (input.dataset.gpValue) input.value = input.dataset.gpValue;
    });
    var button = document.createElement("button");
    button.type = "button";
    button.className = "gradpath-quiz-check";
    button.textContent = "Check";
    button.setAttribute("aria-describedby", input.id);
    button.addEventListener("click", function () { checkNumeric(input); });
    input.insertAdjacentElement("afterend", button);
    button.insertAdjacentElement("afterend", hint);
  }

  function setUpQuizzes() {
    var quizzes = document.querySelectorAll(".Quiz");
    if (!quizzes.length) return;
    document.querySelectorAll(".Quiz .Feedback").forEach(function (fb) {
      fb.setAttribute("role", "status");
      fb.setAttribute("aria-live", "polite");
    });
    document.querySelectorAll(".Quiz input.Input-text").forEach(fixNumeric);
    document.querySelectorAll(".Quiz .MCButton input").forEach(function (input) {
      if (!input.getAttribute("aria-label")) {
        var span = input.parentNode.querySelector("span");
        var name = spokenText(span || input.parentNode);
        if (name) input.setAttribute("aria-label", name);
      }
    });
  }

  /* ------------------------------------------------------------------ Thebe (live code) */

  function setUpThebe() {
    var shown = false;
    function explain() {
      if (shown || typeof window.thebelab !== "undefined") return;
      shown = true;
      var note = document.createElement("div");
      note.className = "gradpath-thebe-note";
      note.setAttribute("role", "status");
      note.innerHTML = "<strong>Live code could not start.</strong> It runs this page's code on " +
        "mybinder.org, which could not be reached from here (no connection, or the service is " +
        "busy). Everything on this page works without it; to run the code, open the notebook " +
        "on Colab or Binder from the rocket menu, or download it with the download button.";
      var button = document.querySelector(".thebe-launch-button");
      var title = document.querySelector("main section h1, main h1");
      if (button) {
        button.textContent = "Live code is unavailable offline";
        button.insertAdjacentElement("afterend", note);
      } else if (title) {
        title.insertAdjacentElement("afterend", note);
      }
    }
    document.addEventListener("click", function (event) {
      var target = event.target.closest && event.target.closest(".btn-launch-thebe");
      if (target) setTimeout(explain, 8000);
    }, true);
    // Fail fast: the Thebe script (from a CDN) could not be fetched.
    window.addEventListener("error", function (event) {
      var t = event.target;
      if (t && t.tagName === "SCRIPT" && /thebe/i.test(t.src || "") && !/sphinx-thebe/.test(t.src)) {
        explain();
      }
    }, true);
  }

  ready(function () {
    setUpFigures();
    setUpQuizzes();
    setUpMath();
    setUpThebe();
    var resized = null;
    window.addEventListener("resize", function () {
      clearTimeout(resized);
      resized = setTimeout(proseMath, 300);
    });
  });
})();
