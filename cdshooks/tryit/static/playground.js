/* Playground: pick or paste a FHIR Bundle, call the service's playground endpoint, show the cards as an EHR would.
 *
 * No framework and no build step. Every piece of text from the service or the Bundle reaches the page as a
 * DOM text node (never as HTML), and card detail Markdown goes through renderMarkdown(), which builds
 * elements itself: raw HTML in a card stays visible text, and only http(s) and mailto links become links.
 * Accepting a suggestion or dismissing a card only marks it on this page; no feedback is sent.
 */
"use strict";

(function () {
  // -- small DOM helpers ---------------------------------------------------------------------------------
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of [].concat(children || [])) {
      if (child === null || child === undefined || child === "") continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  const SAFE_SCHEMES = ["http:", "https:", "mailto:"];

  /** The URL if it is absolute and http, https or mailto; otherwise null. */
  function safeUrl(href) {
    try {
      const url = new URL(href);
      return SAFE_SCHEMES.includes(url.protocol) ? url.href : null;
    } catch (_) {
      return null;
    }
  }

  function link(label, href) {
    const url = safeUrl(href);
    if (!url) return document.createTextNode(label);
    return el("a", {href: url, target: "_blank", rel: "noopener noreferrer"}, label);
  }

  // -- a small, safe Markdown renderer -------------------------------------------------------------------
  // Blocks: paragraphs (blank-line separated), "-", "*" or "+" lists, "1." lists, "#" headings.
  // Inline: **bold**, __bold__, *italic*, _italic_, `code`, [label](url). Everything else is text.
  const INLINE = [
    {re: /`([^`\n]+)`/, make: (m) => el("code", null, m[1])},
    {re: /\[([^\]\n]+)\]\(([^()\s]+)\)/, make: (m) => link(m[1], m[2])},
    {re: /\*\*(?=\S)([\s\S]*?\S)\*\*/, make: (m) => el("strong", null, inline(m[1]))},
    {re: /__(?=\S)([\s\S]*?\S)__/, make: (m) => el("strong", null, inline(m[1]))},
    {re: /\*(?=[^\s*])([^*]*?[^\s*])\*/, make: (m) => el("em", null, inline(m[1]))},
    {re: /(?<![\p{L}\p{N}_])_(?=[^\s_])([^_]*?[^\s_])_(?![\p{L}\p{N}_])/u, make: (m) => el("em", null, inline(m[1]))},
  ];

  function inline(text) {
    const out = [];
    while (text) {
      let best = null;
      let make = null;
      for (const rule of INLINE) {
        const m = rule.re.exec(text);
        if (m && (best === null || m.index < best.index)) {
          best = m;
          make = rule.make;
        }
      }
      if (best === null) {
        out.push(document.createTextNode(text));
        break;
      }
      if (best.index > 0) out.push(document.createTextNode(text.slice(0, best.index)));
      out.push(make(best));
      text = text.slice(best.index + best[0].length);
    }
    return out;
  }

  function renderMarkdown(source) {
    const fragment = document.createDocumentFragment();
    const lines = String(source || "").replace(/\r\n?/g, "\n").split("\n");
    let paragraph = [];
    let list = null; // {node, items: [[line, ...], ...]}

    function flushParagraph() {
      if (paragraph.length) fragment.append(el("p", null, inline(paragraph.join(" "))));
      paragraph = [];
    }
    function flushList() {
      if (list) {
        for (const item of list.items) list.node.append(el("li", null, inline(item.join(" "))));
        fragment.append(list.node);
      }
      list = null;
    }
    function startItem(tag, text, start) {
      flushParagraph();
      if (!list || list.node.tagName.toLowerCase() !== tag) {
        flushList();
        list = {node: el(tag, tag === "ol" && start !== 1 ? {start: start} : null), items: []};
      }
      list.items.push([text]);
    }

    for (const raw of lines) {
      const line = raw.replace(/\s+$/, "");
      let m;
      if (!line.trim()) {
        flushParagraph();
        flushList();
      } else if ((m = /^(#{1,6})\s+(.*)$/.exec(line))) {
        flushParagraph();
        flushList();
        fragment.append(el("h" + Math.min(6, m[1].length + 3), null, inline(m[2])));
      } else if ((m = /^\s*[-*+]\s+(.*)$/.exec(line))) {
        startItem("ul", m[1]);
      } else if ((m = /^\s*(\d{1,9})[.)]\s+(.*)$/.exec(line))) {
        startItem("ol", m[2], parseInt(m[1], 10));
      } else if (list) {
        list.items[list.items.length - 1].push(line.trim());
      } else {
        paragraph.push(line.trim());
      }
    }
    flushParagraph();
    flushList();
    return fragment;
  }

  // -- FHIR display helpers -----------------------------------------------------------------------------
  const SYSTEMS = {
    "http://snomed.info/sct": "SNOMED CT",
    "http://loinc.org": "LOINC",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
    "http://www.ama-assn.org/go/cpt": "CPT",
  };

  function orderConcept(resource) {
    if (resource.medicationCodeableConcept) return resource.medicationCodeableConcept;
    if (resource.medicationReference) return {text: resource.medicationReference.display || resource.medicationReference.reference};
    return resource.code || null;
  }

  function conceptText(concept) {
    if (!concept) return "";
    const coded = (concept.coding || []).find((c) => c && c.display);
    return concept.text || (coded && coded.display) || "";
  }

  function conceptCodes(concept) {
    return ((concept && concept.coding) || [])
      .filter((c) => c && c.code)
      .map((c) => `${SYSTEMS[c.system] || c.system || "code"} ${c.code}`)
      .join(", ");
  }

  function quantity(q) {
    return q && q.value !== undefined ? `${q.value} ${q.unit || q.code || ""}`.trim() : "";
  }

  function doseText(resource) {
    const dosage = (resource.dosageInstruction || [])[0];
    if (!dosage) return "";
    const parts = [];
    const dose = quantity(((dosage.doseAndRate || [])[0] || {}).doseQuantity);
    if (dose) parts.push(dose);
    const repeat = (dosage.timing && dosage.timing.repeat) || null;
    if (repeat && repeat.frequency) parts.push(`${repeat.frequency} × per ${repeat.period || 1} ${repeat.periodUnit || ""}`.trim());
    const max = dosage.maxDosePerPeriod;
    if (max && max.numerator) parts.push(`max ${quantity(max.numerator)} per ${quantity(max.denominator) || "period"}`);
    if (dosage.text) parts.push(dosage.text);
    return parts.join(" · ");
  }

  function renderAction(action) {
    const resource = action.resource || null;
    const items = [el("span", {class: "action-type"}, action.type || "?")];
    if (resource) {
      const concept = orderConcept(resource);
      items.push(el("span", {class: "resource-type"}, resource.resourceType || "resource"));
      items.push(el("span", {class: "order-name"}, conceptText(concept) || action.description || ""));
      const codes = conceptCodes(concept);
      if (codes) items.push(el("span", {class: "order-codes"}, codes));
      if (resource.priority && resource.priority !== "routine") items.push(el("span", {class: "priority"}, resource.priority));
      const dose = doseText(resource);
      if (dose) items.push(el("span", {class: "dose"}, dose));
    } else {
      items.push(el("span", {class: "order-name"}, action.resourceId || action.description || ""));
    }
    if (resource && action.description) items.push(el("div", {class: "action-description"}, action.description));
    return el("li", {class: "action"}, items);
  }

  function renderSuggestion(suggestion) {
    const button = el("button", {type: "button", class: "suggestion-button"}, suggestion.label || "Suggestion");
    const box = el("div", {class: "suggestion" + (suggestion.isRecommended ? " suggestion--recommended" : "")}, [
      button,
      suggestion.isRecommended ? el("span", {class: "tag"}, "recommended") : null,
      el("ul", {class: "actions"}, (suggestion.actions || []).map(renderAction)),
    ]);
    button.addEventListener("click", () => {
      box.classList.toggle("suggestion--accepted");
      button.setAttribute("aria-pressed", box.classList.contains("suggestion--accepted") ? "true" : "false");
    });
    return box;
  }

  function renderLink(item) {
    if (item.type === "smart") {
      return el("li", null, [item.label || "SMART app", el("span", {class: "hint"}, " (SMART app launch: " + (item.url || "") + ")")]);
    }
    return el("li", null, link(item.label || item.url || "link", item.url || ""));
  }

  function renderCard(card) {
    const indicator = ["critical", "warning", "info"].includes(card.indicator) ? card.indicator : "info";
    const source = card.source || {};
    const rule = (source.topic && source.topic.code) || "";
    const node = el("article", {class: `card card--${indicator}`, "data-rule": rule}, [
      el("header", {class: "card-header"}, [
        el("span", {class: "indicator"}, card.indicator || "info"),
        el("h3", {class: "summary"}, card.summary || ""),
      ]),
    ]);
    if (card.detail) {
      const detail = el("div", {class: "detail"});
      detail.append(renderMarkdown(card.detail));
      node.append(detail);
    }
    if ((card.suggestions || []).length) {
      node.append(el("section", {class: "suggestions"}, [
        el("h4", null, card.selectionBehavior === "at-most-one" ? "Suggestions (choose at most one)" : "Suggestions"),
        ...card.suggestions.map(renderSuggestion),
      ]));
    }
    if ((card.links || []).length) {
      node.append(el("section", {class: "links"}, [el("h4", null, "Links"), el("ul", null, card.links.map(renderLink))]));
    }
    const dismissed = el("p", {class: "dismissed-note", hidden: true});
    if ((card.overrideReasons || []).length) {
      const reasons = card.overrideReasons.map((reason) => {
        const b = el("button", {type: "button", class: "reason"}, reason.display || reason.code || "reason");
        b.addEventListener("click", () => {
          node.classList.add("card--dismissed");
          dismissed.hidden = false;
          dismissed.textContent = `Dismissed: ${reason.display || reason.code} (on this page only; no feedback sent)`;
        });
        return b;
      });
      node.append(el("section", {class: "override"}, [el("span", {class: "override-label"}, "Dismiss:"), ...reasons]));
    }
    node.append(dismissed);
    node.append(el("footer", {class: "source"}, [
      "Source: ",
      source.url ? link(source.label || source.url, source.url) : (source.label || "—"),
      rule ? el("span", {class: "rule-id"}, ` · rule ${rule}`) : null,
    ]));
    return node;
  }

  // -- the page ------------------------------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);
  const state = {fixtures: [], fixture: null};

  function setStatus(text, kind) {
    const status = $("status");
    status.textContent = text;
    status.className = "status" + (kind ? " status--" + kind : "");
  }

  function showJson(id, value) {
    $(id).textContent = value === undefined ? "" : JSON.stringify(value, null, 2);
  }

  function outcomeMessage(body, status) {
    const issue = body && body.resourceType === "OperationOutcome" && (body.issue || [])[0];
    return issue && issue.diagnostics ? issue.diagnostics : `The service answered HTTP ${status}`;
  }

  async function loadFixtures() {
    try {
      const resp = await fetch("playground/fixtures", {headers: {Accept: "application/json"}});
      const body = await resp.json();
      if (!resp.ok) throw new Error(outcomeMessage(body, resp.status));
      state.fixtures = body.fixtures || [];
      const select = $("fixture");
      for (const f of state.fixtures) {
        select.append(el("option", {value: f.name, title: f.description || ""}, `${f.name} (${f.hook})`));
      }
      if (!state.fixtures.length) setStatus("No scenarios found; paste or upload a Bundle.");
    } catch (err) {
      setStatus(`Could not list the scenarios: ${err.message}`, "error");
    }
  }

  async function pickFixture() {
    const name = $("fixture").value;
    const fixture = state.fixtures.find((f) => f.name === name) || null;
    state.fixture = null;
    $("fixture-description").textContent = fixture ? fixture.description || "" : "";
    if (!fixture) return;
    setStatus(`Loading ${name}…`);
    try {
      const resp = await fetch("playground/fixtures/" + name.split("/").map(encodeURIComponent).join("/"));
      const body = await resp.json();
      if (!resp.ok) throw new Error(outcomeMessage(body, resp.status));
      $("bundle").value = JSON.stringify(body, null, 2);
      $("hook").value = fixture.hook;
      $("patient").value = "";
      state.fixture = fixture;
      setStatus(`Loaded ${name}. Press Evaluate.`);
    } catch (err) {
      setStatus(`Could not load ${name}: ${err.message}`, "error");
    }
  }

  function dataEdited() {
    state.fixture = null;
    $("fixture").value = "";
    $("fixture-description").textContent = "";
  }

  function uploadFile() {
    const file = $("file").files[0];
    if (!file) return;
    const reader = new FileReader();
    reader.onload = () => {
      $("bundle").value = String(reader.result);
      dataEdited();
      setStatus(`Read ${file.name}. Press Evaluate.`);
    };
    reader.onerror = () => setStatus(`Could not read ${file.name}`, "error");
    reader.readAsText(file);
  }

  /** What became of the pasted or uploaded data: read, sent, dropped, unreadable (as `cdshooks evaluate` says). */
  function readingText(r) {
    if (!r) return "";
    const n = (k) => Number(k).toLocaleString("en-US");
    return `Read ${n(r.resources)} resource${r.resources === 1 ? "" : "s"}: ${n(r.sent)} sent to ${r.hook} ` +
      `for Patient/${r.patient}, ${n(r.dropped)} dropped (other patients' or none, or not asked for by the ` +
      `hook's prefetch), ${n(r.unreadable)} unreadable.`;
  }

  async function evaluate() {
    const hook = $("hook").value;
    const params = new URLSearchParams({hook: hook});
    const patient = $("patient").value.trim();
    if (patient) params.set("patient", patient);
    const fixture = state.fixture;
    if (fixture && fixture.selections && fixture.hook === hook) params.set("selections", fixture.selections.join(","));
    const button = $("evaluate");
    button.disabled = true;
    setStatus("Evaluating…");
    $("cards").replaceChildren();
    $("count").textContent = "";
    $("reading").textContent = "";
    showJson("request-json");
    showJson("response-json");
    const started = performance.now();
    try {
      const resp = await fetch("playground/evaluate?" + params.toString(), {
        method: "POST",
        headers: {"Content-Type": "application/fhir+json", Accept: "application/json"},
        body: $("bundle").value,
      });
      const body = await resp.json();
      const ms = Math.round(performance.now() - started);
      if (!resp.ok) {
        showJson("response-json", body);
        setStatus(outcomeMessage(body, resp.status), "error");
        return;
      }
      showJson("request-json", body.request);
      showJson("response-json", body.response);
      $("reading").textContent = readingText(body.reading);
      const cards = body.response.cards || [];
      $("cards").replaceChildren(...cards.map(renderCard));
      $("count").textContent = `(${cards.length})`;
      setStatus(cards.length ? `${cards.length} card${cards.length === 1 ? "" : "s"} in ${ms} ms` : `No cards (${ms} ms)`, "ok");
    } catch (err) {
      setStatus(`The call failed: ${err.message}`, "error");
    } finally {
      button.disabled = false;
    }
  }

  window.Playground = {renderMarkdown: renderMarkdown, renderCard: renderCard};

  document.addEventListener("DOMContentLoaded", () => {
    $("fixture").addEventListener("change", pickFixture);
    $("file").addEventListener("change", uploadFile);
    $("bundle").addEventListener("input", dataEdited);
    $("evaluate").addEventListener("click", evaluate);
    loadFixtures();
  });
})();
