/* Draws the Adaptive Cards Herald sends with Microsoft's renderer (adaptivecards, vendored).
 * Each host element carries the card's JSON in data-card. In the sandbox inbox (data-mode="inbox")
 * an Action.Execute posts its verb and data the way Teams would send the invoke; in previews the
 * buttons only say that they are a preview. */
(function () {
  "use strict";
  if (!window.AdaptiveCards || !window.markdownit) { return; }
  var AC = window.AdaptiveCards;
  // Teams renders TextBlock Markdown itself; markdown-it (CommonMark, raw HTML off) stands in for it.
  var md = window.markdownit({ html: false, linkify: false, breaks: false });
  AC.AdaptiveCard.onProcessMarkdown = function (text, result) {
    result.outputHtml = md.render(text);
    result.didProcess = true;
  };
  var hostConfig = new AC.HostConfig({
    fontFamily: "'Segoe UI', system-ui, -apple-system, sans-serif",
    supportsInteractivity: true,
    containerStyles: {
      "default": { backgroundColor: "#FFFFFF", foregroundColors: { "default": { "default": "#242424", subtle: "#616161" },
        attention: { "default": "#C4314B", subtle: "#C4314B" }, good: { "default": "#237B4B", subtle: "#237B4B" },
        warning: { "default": "#835B00", subtle: "#835B00" }, accent: { "default": "#5B5FC7", subtle: "#5B5FC7" } } },
      emphasis: { backgroundColor: "#F5F5F5" },
      attention: { backgroundColor: "#FCF4F6" }, good: { backgroundColor: "#F1FAF1" }, warning: { backgroundColor: "#FBF6D9" }
    },
    actions: { actionsOrientation: "horizontal", buttonSpacing: 8, maxActions: 6 }
  });

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function post(host, verb, data) {
    var body = new FormData();
    body.append("verb", verb);
    body.append("data", JSON.stringify(data || {}));
    body.append("look", "teams");
    return fetch(host.dataset.action, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf(), "Accept": "application/json" }
    }).then(function (response) {
      return response.json().then(function (answer) {
        if (!response.ok) { throw new Error(answer.error || "refused"); }
        window.location.assign(answer.location);
      });
    }).catch(function (error) {
      var note = document.createElement("p");
      note.className = "message bad";
      note.setAttribute("role", "alert");
      note.textContent = error.message;
      host.appendChild(note);
    });
  }

  function render(host) {
    var card = new AC.AdaptiveCard();
    card.hostConfig = hostConfig;
    try {
      card.parse(JSON.parse(host.dataset.card));
    } catch (error) {
      host.textContent = "This card could not be read: " + error.message;
      host.dataset.rendered = "error";
      return;
    }
    var failures = card.validateProperties().failures || [];
    host.dataset.validationFailures = String(failures.length);
    card.onExecuteAction = function (action) {
      if (action instanceof AC.OpenUrlAction) {
        window.open(action.url, "_blank", "noopener");
      } else if (host.dataset.mode === "inbox" && action instanceof AC.ExecuteAction) {
        post(host, action.verb, action.data);
      } else {
        host.dataset.lastAction = action.title || "";
        host.classList.add("preview-clicked");
      }
    };
    var element = card.render();
    host.replaceChildren(element);
    if (failures.length) {
      var list = document.createElement("ul");
      list.className = "card-problems";
      failures.forEach(function (failure) {
        (failure.errors || []).forEach(function (problem) {
          var item = document.createElement("li");
          item.textContent = problem.message;
          list.appendChild(item);
        });
      });
      host.appendChild(list);
    }
    host.dataset.rendered = "yes";
  }

  document.querySelectorAll(".ac-host[data-card]").forEach(render);
})();
