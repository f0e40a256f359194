(function () {
  "use strict";
  // A message link opens the message's page in its frame (a[target] names the frame's box).
  document.addEventListener("click", function (ev) {
    var a = ev.target.closest("a.msg[target]");
    if (!a) { return; }
    var box = document.getElementById(a.getAttribute("target"));
    if (box) {
      box.hidden = false;
      box.scrollIntoView({block: "start"});
    }
  });
  // A link to a folded scenario unfolds it.
  function unfold() {
    var id = decodeURIComponent(location.hash.slice(1));
    var target = id && document.getElementById(id);
    var details = target && target.closest("details");
    if (details && !details.open) {
      details.open = true;
      target.scrollIntoView({block: "start"});
    }
  }
  window.addEventListener("hashchange", unfold);
  unfold();
  // The messages page: find a message by its id.
  var find = document.getElementById("find");
  var numbers = document.getElementById("message-numbers");
  if (find && numbers) {
    var known = JSON.parse(numbers.textContent);
    find.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var id = find.elements.q.value.trim();
      var said = document.getElementById("not-found");
      var box = document.getElementById("detail");
      if (!Object.prototype.hasOwnProperty.call(known, id)) {
        said.textContent = " No message with id " + JSON.stringify(id) + " in this run.";
        return;
      }
      said.textContent = "";
      box.querySelector("iframe").src = "m/" + known[id] + ".html";
      box.hidden = false;
      box.scrollIntoView({block: "start"});
    });
  }
})();
