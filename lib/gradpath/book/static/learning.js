/* Gradient Flow — saved quiz progress (gradpath.book.learning).
 *
 * jupyterquiz draws each quiz into a <div data-shufflequestions=...> with one .Quiz block per
 * question, and marks an answer by giving its button (or its text input) the class
 * correctButton or incorrectButton. This script watches those classes, saves each question's
 * state in localStorage under
 *     gradflow:quiz:v1:<page>  ->  {questions: {"<quiz>.<question>": {h, picks | value, correct}}}
 * where h is a signature of the question's answers (a changed question is not restored) and
 * picks are the signatures of the chosen options.
 * (page = the Sphinx page name, quiz = the quiz's place on the page, question = its number),
 * replays the saved answers on the next visit, shows a score and a reset button above each quiz,
 * and draws the course-wide progress where the page asks for it (the intro page, the Review
 * page). Nothing is sent anywhere; without localStorage the quizzes simply work as before.
 */
(function () {
  "use strict";

  var PREFIX = "gradflow:quiz:v1:";
  var config = readConfig();
  var storageOK = (function () {
    try {
      var k = PREFIX + "__probe__";
      window.localStorage.setItem(k, "1");
      window.localStorage.removeItem(k);
      return true;
    } catch (e) {
      return false;
    }
  })();
  var quizzes = [];          // {container, index, questions: [{el, key, info}], box}
  var restoring = false;

  function readConfig() {
    var el = document.getElementById("gp-learning-config");
    if (!el) return null;
    try { return JSON.parse(el.textContent); } catch (e) { return null; }
  }

  function pageKey() {
    return config && config.page ? config.page : window.location.pathname;
  }

  function load(page) {
    if (!storageOK) return { questions: {} };
    try {
      var v = JSON.parse(window.localStorage.getItem(PREFIX + page) || "null");
      if (v && typeof v.questions === "object" && v.questions) return v;
    } catch (e) { /* a corrupt entry counts as no progress */ }
    return { questions: {} };
  }

  function save(page, data) {
    if (!storageOK) return;
    data.updated = Date.now();
    try { window.localStorage.setItem(PREFIX + page, JSON.stringify(data)); } catch (e) { /* full */ }
  }

  // FNV-1a: a short signature of a question's answers, so a changed question is not restored.
  function hash(s) {
    var h = 2166136261;
    for (var i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 16777619);
    }
    return (h >>> 0).toString(36);
  }

  function describe(q) {
    var labels = Array.prototype.slice.call(q.querySelectorAll(".Answer > label[data-correct]"));
    var input = q.querySelector(".Answer input.Input-text");
    if (labels.length) {
      // An option is known by its correctness and feedback, not by its place, so a quiz shown
      // with shuffled answers restores the same options.
      var sigs = labels.map(function (l) {
        return hash(l.getAttribute("data-correct") + ":" + (l.getAttribute("data-feedback") || ""));
      });
      var numCorrect = labels.filter(function (l) { return l.getAttribute("data-correct") === "true"; }).length;
      return { kind: "choice", labels: labels, sigs: sigs, numCorrect: numCorrect,
               h: hash("choice\n" + sigs.slice().sort().join("\n")) };
    }
    if (input) {
      return { kind: "input", input: input, h: hash("input\n" + (input.getAttribute("data-answers") || "")) };
    }
    return null;
  }

  function marked(el) {
    return el.classList.contains("correctButton") || el.classList.contains("incorrectButton");
  }

  function readState(info, previous) {
    if (info.kind === "choice") {
      var picks = [], right = 0, wrong = 0;
      info.labels.forEach(function (l, i) {
        if (!marked(l)) return;
        picks.push(info.sigs[i]);
        if (l.classList.contains("correctButton")) right++; else wrong++;
      });
      if (!picks.length) return null;
      var correct = info.numCorrect <= 1 ? right === 1 && wrong === 0
                                         : wrong === 0 && right === info.numCorrect;
      return { h: info.h, picks: picks, correct: correct };
    }
    if (!marked(info.input)) return null;
    var value = info.input.value;
    if (value === "" && previous && previous.value !== undefined) value = previous.value;
    return { h: info.h, value: value, correct: info.input.classList.contains("correctButton") };
  }

  function tally(quiz, data) {
    var correct = 0, answered = 0;
    quiz.questions.forEach(function (q) {
      var s = data.questions[q.key];
      if (s && s.h === q.info.h) {
        answered++;
        if (s.correct) correct++;
      }
    });
    return { correct: correct, answered: answered, total: quiz.questions.length };
  }

  function pageTotals(data) {
    var totals = { correct: 0, answered: 0, total: 0 };
    quizzes.forEach(function (quiz) {
      var t = tally(quiz, data);
      totals.correct += t.correct;
      totals.answered += t.answered;
      totals.total += t.total;
    });
    return totals;
  }

  function scoreText(t) {
    return t.correct + " of " + t.total + " answered correctly" +
      (t.answered > t.correct ? " (" + t.answered + " answered)" : "");
  }

  function refresh() {
    var data = load(pageKey());
    quizzes.forEach(function (quiz) {
      var t = tally(quiz, data);
      quiz.box.querySelector(".gp-quiz-score").textContent = scoreText(t);
      quiz.box.dataset.correct = t.correct;
      quiz.box.dataset.answered = t.answered;
      quiz.box.dataset.total = t.total;
    });
    drawCourse();
  }

  function record(quiz, q) {
    if (restoring) return;
    var page = pageKey();
    var data = load(page);
    var state = readState(q.info, data.questions[q.key]);
    if (state) data.questions[q.key] = state; else delete data.questions[q.key];
    var totals = pageTotals(data);
    data.total = totals.total;
    data.correct = totals.correct;
    data.answered = totals.answered;
    data.title = document.title;
    save(page, data);
    refresh();
  }

  // Replay one saved answer through jupyterquiz's own handlers, so its feedback shows too.
  function replay(q, state) {
    var info = q.info;
    if (info.kind === "choice") {
      var chosen = [];
      (state.picks || []).forEach(function (sig) {
        var i = info.sigs.indexOf(sig);
        if (i >= 0) chosen.push(info.labels[i]);
      });
      // Correct options first: a wrong click resets the many-choice tally, as it did when saved.
      chosen.sort(function (a, b) {
        return (b.getAttribute("data-correct") === "true" ? 1 : 0) -
               (a.getAttribute("data-correct") === "true" ? 1 : 0);
      });
      chosen.forEach(function (label) { label.click(); });
    } else if (state.value !== undefined && state.value !== "") {
      info.input.value = state.value;
      var ev = new KeyboardEvent("keypress", { key: "Enter", keyCode: 13, which: 13, bubbles: true });
      info.input.dispatchEvent(ev);
      if (!marked(info.input) && typeof window.check_numeric === "function" &&
          q.el.querySelector(".NumericQn")) {
        window.check_numeric(info.input, { keyCode: 13 });
      }
    }
  }

  function restore(quiz) {
    var page = pageKey();
    var data = load(page);
    var stale = false;
    var focus = HTMLElement.prototype.focus;
    var scrollX = window.scrollX, scrollY = window.scrollY;
    restoring = true;
    // jupyterquiz focuses the next numeric input after a correct answer; while replaying that
    // would scroll the page to the quiz, so focusing is switched off for the replay only.
    HTMLElement.prototype.focus = function () {};
    try {
      quiz.questions.forEach(function (q) {
        var s = data.questions[q.key];
        if (!s) return;
        if (s.h !== q.info.h) { delete data.questions[q.key]; stale = true; return; }
        try { replay(q, s); } catch (e) { /* leave this question unanswered */ }
      });
    } finally {
      HTMLElement.prototype.focus = focus;
      restoring = false;
      if (document.activeElement && document.activeElement !== document.body &&
          quiz.container.contains(document.activeElement)) {
        document.activeElement.blur();
      }
      window.scrollTo(scrollX, scrollY);
    }
    if (stale) save(page, data);
  }

  function resetQuiz(quiz) {
    var page = pageKey();
    var data = load(page);
    quiz.questions.forEach(function (q) {
      delete data.questions[q.key];
      var fb = q.el.querySelector(".Feedback");
      if (fb) {
        fb.innerHTML = "";
        fb.className = "Feedback";
        fb.dataset.answeredcorrect = 0;
      }
      if (q.info.kind === "choice") {
        q.info.labels.forEach(function (l) {
          l.className = "MCButton";
          l.dataset.answered = 0;
          var radio = l.querySelector("input");
          if (radio) radio.checked = false;
        });
      } else {
        q.info.input.value = "";
        q.info.input.className = "Input-text";
      }
    });
    var totals = pageTotals(data);
    data.total = totals.total;
    data.correct = totals.correct;
    data.answered = totals.answered;
    save(page, data);
    refresh();
  }

  function makeBox(quiz) {
    var box = document.createElement("div");
    box.className = "gp-quiz-progress";
    var score = document.createElement("span");
    score.className = "gp-quiz-score";
    score.setAttribute("role", "status");
    score.setAttribute("aria-live", "polite");
    var note = document.createElement("span");
    note.className = "gp-quiz-note";
    note.textContent = storageOK ? "Your answers are saved in this browser only."
                                 : "This browser does not allow saving answers (localStorage is off).";
    var button = document.createElement("button");
    button.type = "button";
    button.className = "gp-quiz-reset";
    button.textContent = "Reset my answers";
    button.addEventListener("click", function () { resetQuiz(quiz); });
    box.appendChild(score);
    box.appendChild(note);
    box.appendChild(button);
    return box;
  }

  function attach(container) {
    var blocks = Array.prototype.slice.call(container.querySelectorAll(".Quiz"));
    if (!blocks.length) return false;
    var index = quizzes.length;
    var quiz = { container: container, index: index, questions: [] };
    blocks.forEach(function (el, i) {
      var info = describe(el);
      if (!info) return;
      var qnum = el.dataset.qnum !== undefined ? el.dataset.qnum : String(i);
      quiz.questions.push({ el: el, key: index + "." + qnum, info: info });
    });
    container.dataset.gpLearning = "1";
    quiz.box = makeBox(quiz);
    container.parentNode.insertBefore(quiz.box, container);
    quizzes.push(quiz);
    whenMathReady(function () {
      // jupyterquiz typesets its questions 500 ms after drawing them; when MathJax loads later
      // than that (a slow connection, a busy machine) the questions would keep their raw TeX.
      var mj = window.MathJax;
      if (mj && typeof mj.typesetPromise === "function") {
        mj.typesetPromise([container]).then(go, go);
      } else {
        go();
      }
    });
    function go() {
      restore(quiz);
      var observer = new MutationObserver(function (mutations) {
        var touched = [];
        mutations.forEach(function (m) {
          var block = m.target.closest ? m.target.closest(".Quiz") : null;
          if (block && touched.indexOf(block) < 0) touched.push(block);
        });
        touched.forEach(function (block) {
          quiz.questions.forEach(function (q) { if (q.el === block) record(quiz, q); });
        });
      });
      observer.observe(container, { attributes: true, attributeFilter: ["class"], subtree: true });
      refresh();
      quiz.box.dataset.ready = "1";   // answers restored, changes now recorded
    }
    return true;
  }

  // Wait until the page's MathJax (if any) has loaded and typeset the page: jupyterquiz's
  // handlers typeset their feedback and fail on a MathJax that is still loading.
  function whenMathReady(callback) {
    var tries = 0;
    (function wait() {
      var mj = window.MathJax;
      var ready = !mj || (mj.version && (mj.version[0] === "2" || typeof mj.typeset === "function"));
      if (ready || tries > 200) {
        if (mj && mj.startup && mj.startup.promise) mj.startup.promise.then(callback, callback);
        else callback();
      } else {
        tries += 1;
        setTimeout(wait, 100);
      }
    })();
  }

  function scan() {
    var found = document.querySelectorAll("div[data-shufflequestions]");
    for (var i = 0; i < found.length; i++) {
      if (!found[i].dataset.gpLearning) attach(found[i]);
    }
  }

  // ------------------------------------------------------------------------------------------
  // Course-wide progress

  function drawCourse() {
    if (!config || !config.course || !config.course.length) return;
    var target = document.getElementById("gp-course-progress");
    if (!target && config.root) {
      var article = document.querySelector("article.bd-article") || document.querySelector("main");
      if (!article) return;
      target = document.createElement("section");
      target.id = "gp-course-progress";
      target.className = "gp-course-progress";
      article.appendChild(target);
    }
    if (!target) return;
    var all = { correct: 0, answered: 0, total: 0 };
    var rows = config.course.map(function (entry) {
      var data = load(entry.page);
      var total = data.total || entry.questions;
      var correct = 0, answered = 0;
      Object.keys(data.questions).forEach(function (k) {
        answered++;
        if (data.questions[k].correct) correct++;
      });
      all.correct += correct;
      all.answered += answered;
      all.total += total;
      return { entry: entry, correct: correct, answered: answered, total: total };
    });
    var html = [];
    if (config.root) html.push('<h2 id="your-progress">Your progress</h2>');
    html.push('<p class="gp-course-summary">' + (storageOK
      ? "You have answered <strong>" + all.correct + " of " + all.total +
        "</strong> quiz questions correctly across the course. Progress is saved in this browser only."
      : "This browser does not allow saving quiz progress (localStorage is off).") + "</p>");
    html.push('<table class="table gp-course-table"><thead><tr><th scope="col">Page</th>' +
              '<th scope="col">Answered correctly</th></tr></thead><tbody>');
    rows.forEach(function (r) {
      var pct = r.total ? Math.round(100 * r.correct / r.total) : 0;
      html.push('<tr data-page="' + escapeHtml(r.entry.page) + '" data-correct="' + r.correct +
        '" data-total="' + r.total + '"><td><a href="' + escapeHtml(r.entry.url) + '">' +
        escapeHtml(r.entry.title) + '</a></td><td><span class="gp-meter" aria-hidden="true">' +
        '<span style="width:' + pct + '%"></span></span> ' + r.correct + " of " + r.total +
        "</td></tr>");
    });
    html.push("</tbody></table>");
    if (storageOK) {
      html.push('<button type="button" class="gp-course-reset">Reset all my answers</button>');
    }
    target.innerHTML = html.join("");
    var reset = target.querySelector(".gp-course-reset");
    if (reset) {
      reset.addEventListener("click", function () {
        if (!window.confirm("Forget every saved quiz answer of this course in this browser?")) return;
        config.course.forEach(function (entry) { window.localStorage.removeItem(PREFIX + entry.page); });
        quizzes.forEach(function (quiz) { resetQuiz(quiz); });
        drawCourse();
      });
    }
  }

  function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function start() {
    scan();
    drawCourse();
    // Quizzes that render late (jupyterquiz retries until its container exists).
    var pending = 0;
    var observer = new MutationObserver(function () {
      if (pending) return;
      pending = setTimeout(function () { pending = 0; scan(); }, 150);
    });
    observer.observe(document.body, { childList: true, subtree: true });
    setTimeout(function () { observer.disconnect(); }, 30000);
  }

  window.gradflowLearning = { prefix: PREFIX, load: load, refresh: refresh };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
