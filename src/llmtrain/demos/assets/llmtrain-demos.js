// Static sliders for the book's demos: swap precomputed figures, no kernel needed.
//
// Each demo on a page is a <div class="llmtrain-demo"> holding the figure the notebook drew
// (the default frame), range inputs that step through the precomputed slider values, and a
// JSON description (class "llmtrain-demo-spec"). On the first interaction the script loads
// the demo's manifest (a script, so it works from file:// too), which maps each frame to a
// base image and a cropped overlay; it then preloads every frame and, on each move, stacks
// the frame's base and overlay over the default image. Made by llmtrain.demos.static_page.
(function () {
  "use strict";
  // The folder this script was served from: the book's _static/.
  const STATIC = new URL(".", document.currentScript.src);
  window.LLMTRAIN_DEMO_FRAMES = window.LLMTRAIN_DEMO_FRAMES || {};

  function loadManifest(key) {
    return new Promise(function (resolve, reject) {
      if (window.LLMTRAIN_DEMO_FRAMES[key]) return resolve(window.LLMTRAIN_DEMO_FRAMES[key]);
      const script = document.createElement("script");
      script.src = new URL("demos/" + key + "/manifest.js", STATIC).href;
      script.onload = function () { resolve(window.LLMTRAIN_DEMO_FRAMES[key]); };
      script.onerror = function () { reject(new Error("no frames for demo " + key)); };
      document.head.appendChild(script);
    });
  }

  function layer(className) {
    const img = document.createElement("img");
    img.className = className;
    img.alt = "";  // the default image below carries the alt text
    img.setAttribute("aria-hidden", "true");
    img.decoding = "sync";
    img.hidden = true;
    return img;
  }

  function setUp(root) {
    const spec = JSON.parse(root.querySelector("script.llmtrain-demo-spec").textContent);
    const inputs = Array.from(root.querySelectorAll(".llmtrain-demo-controls input"));
    const outputs = Array.from(root.querySelectorAll(".llmtrain-demo-controls output"));
    const figure = root.querySelector(".llmtrain-demo-figure");
    const image = figure.querySelector("img.llmtrain-demo-image");
    const base = layer("llmtrain-demo-base");
    const overlay = layer("llmtrain-demo-overlay");
    figure.append(base, overlay);
    const frames = spec.frames.map(function (f) { return f.join("-"); });
    const known = new Set(frames);
    let current = spec.default.slice();
    let manifest = null;
    let loading = null;
    let request = 0;  // only the latest move is shown
    root.dataset.demo = spec.key;
    root.dataset.frame = current.join("-");

    function folder(file) { return new URL("demos/" + spec.key + "/" + file, STATIC).href; }

    function load() {
      if (!loading) {
        loading = loadManifest(spec.key).then(function (m) {
          manifest = m;
          const files = new Set();
          Object.values(m.frames).forEach(function (entry) {
            files.add(entry.base);
            if (entry.src) files.add(entry.src);
          });
          // Fetch everything now, so that later moves find their images in the cache.
          files.forEach(function (file) { new Image().src = folder(file); });
          root.dataset.loaded = "true";
        });
      }
      return loading;
    }

    // The precomputed frame to show when slider `moved` goes to `index`: the one that keeps
    // the most other sliders where they are (every frame, for a full product grid).
    function target(moved, index) {
      const wanted = current.slice();
      wanted[moved] = index;
      if (known.has(wanted.join("-"))) return wanted;
      let best = null;
      let bestScore = -1;
      spec.frames.forEach(function (frame) {
        if (frame[moved] !== index) return;
        const score = frame.filter(function (v, i) { return v === wanted[i]; }).length;
        if (score > bestScore) { best = frame; bestScore = score; }
      });
      return best;
    }

    function describe(indices) {
      const settings = spec.sliders.map(function (s, i) {
        return s.label + " = " + s.text[indices[i]];
      });
      return spec.alt.replace(/ Shown for .*$/, "") + " Shown for " + settings.join(", ") + ".";
    }

    function show(indices, started) {
      const name = indices.join("-");
      const entry = manifest.frames[name];
      const mine = ++request;
      const size = manifest.size;
      const pending = [];
      const baseSrc = folder(entry.base);
      if (base.src !== baseSrc) { base.src = baseSrc; }
      pending.push(base.decode());
      if (entry.src) {
        overlay.src = folder(entry.src);
        const box = entry.box;
        overlay.style.left = (100 * box[0] / size[0]) + "%";
        overlay.style.top = (100 * box[1] / size[1]) + "%";
        overlay.style.width = (100 * box[2] / size[0]) + "%";
        pending.push(overlay.decode());
      }
      return Promise.all(pending).then(function () {
        if (mine !== request) return;
        base.hidden = false;
        overlay.hidden = !entry.src;
        image.alt = describe(indices);
        requestAnimationFrame(function () {
          if (mine !== request) return;
          root.dataset.frame = name;
          root.dataset.swapMs = (performance.now() - started).toFixed(1);
        });
      });
    }

    inputs.forEach(function (input, i) {
      input.addEventListener("input", function () {
        const started = performance.now();
        const indices = target(i, Number(input.value));
        if (!indices) return;
        current = indices;
        inputs.forEach(function (other, j) {
          other.value = String(indices[j]);
          const text = spec.sliders[j].text[indices[j]];
          other.setAttribute("aria-valuetext", text);
          outputs[j].textContent = text;
        });
        load().then(function () { return show(indices, started); }).catch(function (error) {
          root.dataset.error = String(error);
          console.error(error);
        });
      });
      // Start fetching the frames as soon as a reader reaches for a slider.
      function prefetch() { load().catch(function () { /* reported on the next move */ }); }
      input.addEventListener("pointerdown", prefetch, { once: true });
      input.addEventListener("focus", prefetch, { once: true });
    });
  }

  function setUpAll() {
    document.querySelectorAll(".llmtrain-demo").forEach(setUp);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setUpAll);
  } else {
    setUpAll();
  }
})();
