// attnbook: glue between the vendored ipywidgets HTML manager and the rest of the page.
// Loaded (through nb_ipywidgets_js in _config.yml) after require.js and before embed-amd.js,
// on pages that carry widget state.
(function () {
  "use strict";
  // The folder that holds embed-amd.js and its fonts: _static/vendor/html-manager/.
  var here = new URL(".", document.currentScript.src).href;
  var managerDir = new URL("vendor/html-manager/", here).href;

  // embed-amd.js takes its asset folder from the URL that RequireJS gives its modules, which by
  // default is relative to the page (book/@jupyter-widgets/...: a 404 for every font). Map the
  // module ids onto the vendored folder, and say it once more the way webpack reads it.
  window.requirejs.config({
    paths: { "@jupyter-widgets/html-manager/dist": managerDir.replace(/\/$/, "") },
  });
  window.__jupyter_widgets_assets_path__ = managerDir;

  // @jupyter-widgets/base typesets widget labels with MathJax 2's MathJax.Hub.Queue. The site
  // runs MathJax 3 (loaded with `defer`, so it exists by DOMContentLoaded; the widgets render at
  // `load`): give it that one entry point, mapped onto MathJax 3's typesetPromise.
  document.addEventListener("DOMContentLoaded", function () {
    var mj = window.MathJax;
    if (!mj || mj.Hub || !mj.startup) return;
    mj.Hub = {
      Queue: function () {
        Array.prototype.forEach.call(arguments, function (job) {
          if (Array.isArray(job) && job[0] === "Typeset") {
            var element = job[2];
            mj.startup.promise = mj.startup.promise
              .then(function () { return mj.typesetPromise(element ? [element] : undefined); })
              .catch(function (err) { console.error("MathJax typeset failed:", err); });
          }
        });
      },
    };
  });
})();
