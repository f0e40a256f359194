(function () {
  "use strict";
  var cache = {};
  function data(s) {
    if (!cache[s]) {
      cache[s] = JSON.parse(document.getElementById("data-" + s).textContent);
    }
    return cache[s];
  }
  function show(s, id) {
    var panel = document.getElementById("detail-" + s);
    var m = Object.prototype.hasOwnProperty.call(data(s), id) ? data(s)[id] : null;
    function put(name, text) {
      panel.querySelector("[data-field=" + name + "]").textContent = text;
    }
    panel.hidden = false;
    put("title", m ? id : "No message with id " + JSON.stringify(id) + " in this run");
    put("hops", m ? m.summary : "");
    put("envelope", m ? (m.envelope || m.note) : "");
    put("document", m ? (m.document || m.note) : "");
    panel.scrollIntoView({block: "start"});
  }
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest("button[data-msg]");
    if (b) { show(b.getAttribute("data-scenario"), b.getAttribute("data-msg")); }
  });
  document.addEventListener("submit", function (ev) {
    var f = ev.target;
    if (f.hasAttribute("data-scenario")) {
      ev.preventDefault();
      show(f.getAttribute("data-scenario"), f.elements.q.value.trim());
    }
  });
})();
