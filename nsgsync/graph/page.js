// nsgsync graph page: the matrix, its details and the node-link view (no dependencies).
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("graph-data").textContent);
  var E = D.endpoints, N = E.length, F = D.findings;
  function text(i) { return esc(D.strings[i]); }
  var cellAt = new Map();
  D.cells.forEach(function (c) { cellAt.set(c.a * N + c.b, c); });
  var seg = E.map(function (e) { return e.kind === "segment"; });
  var groups = [], gIndex = {};
  E.forEach(function (e, i) {
    if (!(e.group in gIndex)) { gIndex[e.group] = groups.length;
      groups.push({name: e.group, members: [], open: N <= EXPAND_UP_TO}); }
    groups[gIndex[e.group]].members.push(i);
  });
  var G = groups.length, memberGroup = E.map(function (e) { return gIndex[e.group]; });
  // Per pair of namespaces: allowed cells listed, open pairs implied, the rest denied.
  var openE = groups.map(function (g) { return g.members.filter(function (i) { return E[i].eo; }).length; });
  var openI = groups.map(function (g) { return g.members.filter(function (i) { return E[i].io; }).length; });
  var pseudo = groups.map(function (g) { return g.members.every(function (i) { return !seg[i]; }); });
  var blockOpen = new Map(), blockRes = new Map();
  D.cells.forEach(function (c) {
    var k = memberGroup[c.a] * G + memberGroup[c.b];
    var m = c.s === "open" ? blockOpen : blockRes; m.set(k, (m.get(k) || 0) + 1);
  });
  function pairState(a, b) {
    if (!seg[a] && !seg[b]) return {state: "na"};
    var c = cellAt.get(a * N + b);
    if (c) return {state: c.s, cell: c};
    return {state: E[a].eo && E[b].io ? "open" : "denied"};
  }
  function blockState(gi, gj) {
    if (pseudo[gi] && pseudo[gj]) return {state: "na"};
    var total = groups[gi].members.length * groups[gj].members.length;
    var open = openE[gi] * openI[gj] + (blockOpen.get(gi * G + gj) || 0);
    var res = blockRes.get(gi * G + gj) || 0, denied = total - open - res;
    var st = open === total ? "open" : denied === total ? "denied" : res === total ? "restricted" : "mixed";
    return {state: st, open: open, restricted: res, denied: denied, total: total};
  }
  var filterText = "";
  function visibleGroups() {
    var words = filterText.split(/[\s,]+/).filter(Boolean);
    return groups.map(function (g, i) { return i; }).filter(function (i) {
      // A word that names a namespace matches it alone; any other matches as a substring.
      return !words.length || words.some(function (w) {
        return w in gIndex ? groups[i].name === w : groups[i].name.indexOf(w) >= 0;
      });
    });
  }
  function slots(vis) {  // rows (and columns): a collapsed group, or its endpoints
    var out = [];
    vis.forEach(function (gi) {
      if (groups[gi].open) groups[gi].members.forEach(function (i) { out.push({g: gi, e: i}); });
      else out.push({g: gi, e: -1});
    });
    return out;
  }
  function esc(s) { return String(s).replace(/[&<>"]/g, function (ch) {
    return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[ch]; }); }
  var showText = false;
  function render() {
    var vis = visibleGroups(), S = slots(vis);
    showText = S.length <= 30;
    var h = [], heads1 = [], heads2 = [];
    function grpHead(g, span, vertical) {
      var G0 = groups[g], mark = G0.open ? "&#9662; " : "&#9656; ";
      var label = mark + esc(G0.name) + (G0.open ? "" : " (" + G0.members.length + ")");
      return '<th class="grp' + (vertical ? " col" : "") + '" data-group="' + g + '"' + span + ">" + label + "</th>";
    }
    vis.forEach(function (g) {
      if (groups[g].open) {
        heads1.push(grpHead(g, ' colspan="' + groups[g].members.length + '"', false));
        groups[g].members.forEach(function (i) { heads2.push('<th class="col">' + esc(E[i].name) + "</th>"); });
      } else heads1.push(grpHead(g, ' rowspan="2"', true));
    });
    h.push('<table class="m" id="matrix"><thead><tr><th rowspan="2" colspan="2">from \\ to</th>');
    h.push(heads1.join("") + "</tr><tr>" + heads2.join("") + "</tr></thead><tbody>");
    S.forEach(function (r) {
      h.push("<tr>");
      if (r.e < 0) h.push(grpHead(r.g, ' colspan="2"', false));
      else {
        if (groups[r.g].members[0] === r.e) h.push(grpHead(r.g, ' rowspan="' + groups[r.g].members.length + '"', false));
        h.push('<th class="seg">' + esc(E[r.e].name) + "</th>");
      }
      S.forEach(function (c) {
        var st, from, to, text = "";
        if (r.e >= 0 && c.e >= 0) {
          st = pairState(r.e, c.e); from = E[r.e].name; to = E[c.e].name;
          if (showText && st.state !== "na") text = st.cell ? st.cell.t : st.state === "open" ? "all" : "";
        } else {
          var gi = r.e >= 0 ? memberGroup[r.e] : r.g, gj = c.e >= 0 ? memberGroup[c.e] : c.g;
          if (r.e >= 0 || c.e >= 0) {  // one side expanded: sum over the other's members
            st = rowVsGroup(r, c);
          } else st = blockState(gi, gj);
          from = r.e >= 0 ? E[r.e].name : "ns:" + groups[r.g].name;
          to = c.e >= 0 ? E[c.e].name : "ns:" + groups[c.g].name;
          if (showText && st.total) text = st.open + st.restricted + "/" + st.total;
        }
        h.push('<td class="' + st.state + '" data-from="' + esc(from) + '" data-to="' + esc(to) + '">' + esc(text) + "</td>");
      });
      h.push("</tr>");
    });
    h.push("</tbody></table>");
    document.getElementById("matrix-wrap").innerHTML = h.join("");
  }
  function rowVsGroup(r, c) {
    var rows = r.e >= 0 ? [r.e] : groups[r.g].members, cols = c.e >= 0 ? [c.e] : groups[c.g].members;
    var n = {open: 0, restricted: 0, denied: 0, na: 0};
    rows.forEach(function (a) { cols.forEach(function (b) { n[pairState(a, b).state] += 1; }); });
    var total = rows.length * cols.length - n.na;
    var st = !total ? "na" : n.open === total ? "open" : n.denied === total ? "denied" : n.restricted === total ? "restricted" : "mixed";
    return {state: st, open: n.open, restricted: n.restricted, denied: n.denied, total: total};
  }
  function findingsOf(names) {
    return F.filter(function (f) {
      var concerns = f.segments || (f.segment ? [f.segment] : []);
      return concerns.some(function (n) { return names.indexOf(n) >= 0; });
    });
  }
  function list(title, items) {
    if (!items.length) return "";
    return "<h3>" + esc(title) + "</h3><ul>" + items.map(function (x) { return "<li>" + x + "</li>"; }).join("") + "</ul>";
  }
  function details(td) {
    var from = td.getAttribute("data-from"), to = td.getAttribute("data-to"), h = [];
    h.push("<h2>" + esc(from) + " &rarr; " + esc(to) + "</h2>");
    if (from.indexOf("ns:") === 0 || to.indexOf("ns:") === 0) {
      h.push("<p>" + esc(td.className.replace(" sel", "")) + " &mdash; select the namespace heading to expand it.</p>");
    } else {
      var a = E.findIndex(function (e) { return e.name === from; }), b = E.findIndex(function (e) { return e.name === to; });
      var st = pairState(a, b);
      if (st.state === "na") h.push("<p>Neither side is a segment: nsgsync writes no rule here.</p>");
      else if (st.cell) {
        h.push("<p><b>" + esc(st.state) + "</b>: " + esc(st.cell.t) + "</p>");
        h.push(list("policies", st.cell.p.map(text)));
        h.push(list("egress rules of " + from, st.cell.eg.map(text)));
        h.push(list("ingress rules of " + to, st.cell.ig.map(text)));
      } else if (st.state === "open") h.push("<p><b>open</b>: every protocol and port (no policy isolates " + esc(from) + "'s egress or " + esc(to) + "'s ingress).</p>");
      else h.push("<p><b>denied</b>: " + (E[a].eo ? "" : esc(from) + "'s egress is isolated; ") + (E[b].io ? "" : esc(to) + "'s ingress is isolated; ") + "no rule allows the pair.</p>");
      h.push(list("findings", findingsOf([from, to]).map(function (f) {
        return '<span class="' + esc(f.severity) + '">' + esc(f.severity) + " " + esc(f.code) + "</span>: " + esc(f.message); })));
    }
    document.getElementById("side").innerHTML = h.join("");
  }
  var selected = null;
  document.getElementById("matrix-wrap").addEventListener("click", function (ev) {
    var t = ev.target.closest("td, th.grp");
    if (!t) return;
    if (t.tagName === "TH") { var g = groups[+t.getAttribute("data-group")]; g.open = !g.open; render(); return; }
    if (selected) selected.classList.remove("sel");
    selected = t; t.classList.add("sel"); details(t);
  });
  document.getElementById("matrix-wrap").addEventListener("mouseover", function (ev) {
    var t = ev.target.closest("td"); if (t && !selected) details(t);
  });
  document.getElementById("filter").addEventListener("input", function (ev) { filterText = ev.target.value; render(); });
  document.getElementById("expand").addEventListener("click", function () { groups.forEach(function (g) { g.open = true; }); render(); });
  document.getElementById("collapse").addEventListener("click", function () { groups.forEach(function (g) { g.open = false; }); render(); });
  function nodeLink() {
    var box = document.getElementById("nodelink");
    if (N > NODE_LINK_UP_TO) { box.innerHTML = "<p>The node-link view is drawn for clusters of up to " + NODE_LINK_UP_TO + " endpoints; use the matrix.</p>"; return; }
    var W = 760, H = 520, cx = W / 2, cy = H / 2, R = Math.min(W, H) / 2 - 90, pos = [];
    E.forEach(function (e, i) { var t = 2 * Math.PI * i / N - Math.PI / 2; pos.push([cx + R * Math.cos(t), cy + R * Math.sin(t)]); });
    var s = ['<svg xmlns="http://www.w3.org/2000/svg" width="' + W + '" height="' + H + '" viewBox="0 0 ' + W + " " + H + '">',
      '<defs><marker id="arr-open" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="#2e7d32"/></marker>',
      '<marker id="arr-restricted" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="#ef6c00"/></marker></defs>'];
    for (var a = 0; a < N; a++) for (var b = 0; b < N; b++) {
      if (a === b) continue;
      var st = pairState(a, b); if (st.state !== "open" && st.state !== "restricted") continue;
      var p = pos[a], q = pos[b], dx = q[0] - p[0], dy = q[1] - p[1], len = Math.sqrt(dx * dx + dy * dy) || 1;
      var ox = -dy / len * 6, oy = dx / len * 6, r0 = 18;  // offset both ways apart, stop short of the node
      var colour = st.state === "open" ? "#2e7d32" : "#ef6c00";
      var title = E[a].name + " -> " + E[b].name + ": " + (st.cell ? st.cell.t : "all");
      s.push('<line class="edge ' + st.state + '" x1="' + (p[0] + dx / len * r0 + ox) + '" y1="' + (p[1] + dy / len * r0 + oy) + '" x2="' + (q[0] - dx / len * r0 + ox) + '" y2="' + (q[1] - dy / len * r0 + oy) + '" stroke="' + colour + '" stroke-width="1.4"' + (st.state === "open" ? ' stroke-dasharray="4 3"' : "") + ' marker-end="url(#arr-' + st.state + ')"><title>' + esc(title) + "</title></line>");
    }
    E.forEach(function (e, i) {
      var p = pos[i], fill = seg[i] ? "#eef3fb" : "#fff";
      s.push('<g class="node"><circle cx="' + p[0] + '" cy="' + p[1] + '" r="16" fill="' + fill + '" stroke="#1d2733"/>' +
        '<text x="' + p[0] + '" y="' + (p[1] + (p[1] < cy ? -22 : 30)) + '" text-anchor="middle">' + esc(e.name) + "</text></g>");
    });
    s.push("</svg>");
    box.innerHTML = "<h2 style='font-size:14px'>Segments and the connections allowed between them</h2>" + s.join("");
  }
  // A link can set the view: page.html#ns=shop,data&open=shop&cell=FROM,TO filters the
  // namespaces, expands some, and selects one cell (to point a reviewer at one pair).
  var params = {};
  location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
    var i = kv.indexOf("="); if (i > 0) params[kv.slice(0, i)] = decodeURIComponent(kv.slice(i + 1));
  });
  if (params.ns) { filterText = params.ns; document.getElementById("filter").value = params.ns; }
  if (params.open) params.open.split(",").forEach(function (name) {
    if (name in gIndex) groups[gIndex[name]].open = true;
  });
  render();
  nodeLink();
  var wanted = params.cell ? /^([^,]+),(.+)$/.exec(params.cell) : null;
  if (wanted) {
    var hit = document.querySelector('td[data-from="' + CSS.escape(wanted[1]) + '"][data-to="' + CSS.escape(wanted[2]) + '"]');
    if (hit) { selected = hit; hit.classList.add("sel"); details(hit); }
  }
  document.body.setAttribute("data-ready", "1");
})();
