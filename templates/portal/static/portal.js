/* Sealgate pickup portal: small conveniences on top of pages that work without script.
   Loaded as a file (the Content-Security-Policy allows no inline script). */
"use strict";

(function () {
  // The browser's time zone, for the registration form (changeable later under Account).
  function detectTimeZone() {
    var zone = "";
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { zone = ""; }
    document.querySelectorAll("input[data-detect-time-zone]").forEach(function (input) {
      if (!input.value) { input.value = zone; }
    });
  }

  // Print buttons are hidden until script can open the print dialog.
  function printButtons() {
    document.querySelectorAll("[data-print]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () { window.print(); });
    });
  }

  // A message body frame grows to its content, so the page scrolls as one (without
  // script the frame has a fixed height and scrolls on its own).
  function fitFrame(frame) {
    try {
      var doc = frame.contentDocument;
      if (!doc || !doc.documentElement) { return; }
      frame.style.height = "0px";
      frame.style.height = (doc.documentElement.scrollHeight + 4) + "px";
    } catch (e) { /* not same-origin: keep the fixed height */ }
  }

  function messageFrames() {
    var frames = document.querySelectorAll("iframe.message-frame");
    frames.forEach(function (frame) {
      frame.addEventListener("load", function () { fitFrame(frame); });
      fitFrame(frame);
    });
    window.addEventListener("resize", function () { frames.forEach(fitFrame); });
  }

  // Too many megabytes for one reply: say so next to the field before uploading anything.
  function uploadLimit() {
    document.querySelectorAll("input[type=file][data-max-total]").forEach(function (input) {
      var form = input.form;
      var message = document.createElement("p");
      message.className = "error-message";
      message.id = input.id + "-live-error";
      message.setAttribute("role", "alert");
      message.hidden = true;
      input.parentNode.insertBefore(message, input);
      function check() {
        var limit = parseInt(input.getAttribute("data-max-total"), 10);
        var total = 0;
        Array.prototype.forEach.call(input.files || [], function (file) { total += file.size; });
        var tooLarge = total > limit;
        message.hidden = !tooLarge;
        message.textContent = tooLarge
          ? "These files add up to " + (total / 1e6).toFixed(1) + " MB; one reply can carry at most "
            + Math.round(limit / 1e6) + " MB in total. Please remove some, or send them in more than one reply."
          : "";
        if (tooLarge) { input.setAttribute("aria-invalid", "true"); } else { input.removeAttribute("aria-invalid"); }
        return !tooLarge;
      }
      input.addEventListener("change", check);
      if (form) {
        form.addEventListener("submit", function (event) {
          if (!check()) { event.preventDefault(); input.focus(); }
        });
      }
    });
  }

  function start() {
    detectTimeZone();
    printButtons();
    messageFrames();
    uploadLimit();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
