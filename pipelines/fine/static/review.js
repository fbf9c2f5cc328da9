// emer review: keyboard shortcuts (never while typing in a field) and the player's error message.
(function () {
  "use strict";
  var byId = function (id) { return document.getElementById(id); };
  var click = function (id) { var el = byId(id); if (el) { el.click(); } };
  var go = function (id) { var a = byId(id); if (a) { window.location.href = a.href; } };
  var typing = function (el) {
    return el && (el.tagName === "TEXTAREA" || el.tagName === "INPUT" || el.tagName === "SELECT" ||
                  el.isContentEditable);
  };
  var reject = function () {
    var reason = byId("reason");
    if (!reason) { return; }
    if (reason.value.trim()) { click("reject"); } else { reason.focus(); }
  };
  var playPause = function () {
    var v = byId("player");
    if (v) { if (v.paused) { v.play(); } else { v.pause(); } }
  };
  var keys = {
    a: function () { click("accept"); },
    s: function () { click("save"); },
    r: reject,
    e: function () { var d = byId("description"); if (d) { d.focus(); } },
    j: function () { go("next"); }, n: function () { go("next"); },
    k: function () { go("prev"); }, p: function () { go("prev"); },
    " ": playPause
  };
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) { return; }
    var t = e.target;
    if (typing(t)) {
      if (e.key === "Escape") { t.blur(); }
      else if (e.key === "Enter" && t.id === "reason") { e.preventDefault(); click("reject"); }
      else if (e.key === "Enter" && t.id === "labels") { e.preventDefault(); click("save"); }
      return;
    }
    var fn = keys[e.key];
    if (fn) { e.preventDefault(); fn(); }
  });
  var player = byId("player");
  if (player) {
    player.addEventListener("error", function () {
      player.hidden = true;
      var msg = byId("clip-error");
      if (msg) { msg.hidden = false; }
    });
  }
})();
