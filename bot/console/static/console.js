/* Small progressive enhancements; every page works without them.
 * - compose: the audience's recipient count while you type;
 * - a notice's page: its counts and its chart follow deliveries and acknowledgements as they arrive,
 *   until the session ends (then it says so and stops asking). */
(function () {
  "use strict";

  function number(value) {
    return String(value).replace(/\B(?=(\d{3})+(?!\d))/g, "\u202f");
  }

  function audienceCount() {
    var output = document.getElementById("recipient-count");
    var audience = document.getElementById("audience");
    var topic = document.getElementById("topic");
    var importance = document.getElementById("importance");
    if (!output || !audience || !topic) { return; }
    var timer = null;
    var asked = 0;
    function ask() {
      var mine = ++asked;
      var url = output.dataset.endpoint + "?audience=" + encodeURIComponent(audience.value) +
        "&topic=" + encodeURIComponent(topic.value) +
        (importance ? "&importance=" + encodeURIComponent(importance.value) : "");
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (response) { return response.json(); })
        .then(function (answer) {
          if (mine !== asked) { return; }
          if (answer.error) {
            output.textContent = answer.error;
            output.className = "count bad";
            return;
          }
          var text = number(answer.count) + (answer.count === 1 ? " recipient" : " recipients");
          if (answer.warnings && answer.warnings.length) { text += " · " + answer.warnings.join("; "); }
          output.textContent = text;
          output.className = "count" + (answer.count === 0 ? " bad" : "");
          output.dataset.count = String(answer.count);
        })
        .catch(function () { output.textContent = "The count is shown on the preview."; });
    }
    function later() { clearTimeout(timer); timer = setTimeout(ask, 250); }
    audience.addEventListener("input", later);
    topic.addEventListener("change", ask);
    if (importance) { importance.addEventListener("change", ask); }
    if (audience.value) { ask(); }
  }

  function liveCounts() {
    var panel = document.querySelector("[data-live]");
    if (!panel) { return; }
    var note = panel.querySelector(".live-note");
    if (note) { note.hidden = false; }
    function bar(name, value, whole) {
      var strong = panel.querySelector('[data-count="' + name + '"]');
      var svg = strong && strong.parentNode.querySelector("svg.bar .fill");
      if (svg) { svg.setAttribute("width", whole ? (value / whole * 100).toFixed(2) : "0"); }
    }
    var ticks = 0;
    var timer = null;
    function sessionEnded() {
      // the figures would freeze without a word: say so, and stop asking
      clearInterval(timer);
      if (note) {
        note.textContent = "Your session has ended: sign in again to see new figures.";
        note.className = "live-note bad";
        note.setAttribute("role", "status");
        note.hidden = false;
      }
    }
    function refresh() {
      if (document.hidden) { return; }
      var url = panel.dataset.live + (ticks++ % 3 === 0 ? "?chart=1" : "");  // the chart every third poll
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (response) {
          if (response.status === 401) { sessionEnded(); return null; }
          return response.ok ? response.json() : null;
        })
        .then(function (counts) {
          if (!counts) { return; }
          Object.keys(counts).forEach(function (key) {
            var element = panel.querySelector('[data-count="' + key + '"]');
            if (element) { element.textContent = number(counts[key]); }
          });
          var rate = panel.querySelector("[data-rate]");
          if (rate) { rate.textContent = counts.delivered ? Math.round(counts.acknowledged / counts.delivered * 100) + "%" : "–"; }
          bar("delivered", counts.delivered, counts.recipients);
          bar("acknowledged", counts.acknowledged, counts.recipients);
          var chart = document.querySelector("svg.chart");
          if (chart && counts.chart) { chart.outerHTML = counts.chart; }  // drawn by the server, as on the load
        })
        .catch(function () { /* the next tick tries again */ });
    }
    timer = setInterval(refresh, 2000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    audienceCount();
    liveCounts();
  });
})();
