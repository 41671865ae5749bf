// cmh-bench leaderboard: sortable tables and the selection-rule switch. Hand-written, no dependencies.
// A click on a header sorts the table's rows by that column: numbers (data-value) descending first,
// text ascending first; a second click reverses. Cells without a value always sort last.
"use strict";

function cellKey(row, index, numeric) {
  const cell = row.cells[index];
  if (!cell) return null;
  if (numeric) {
    const value = cell.getAttribute("data-value");
    return value === null || value === "" ? null : parseFloat(value);
  }
  return cell.textContent.trim().toLowerCase();
}

function sortTable(table, index, header) {
  const numeric = header.getAttribute("data-type") === "number";
  const previous = header.getAttribute("aria-sort");
  const descending = previous === null || previous === "none" ? numeric : previous === "ascending";
  const body = table.tBodies[0];
  const rows = Array.from(body.rows).map((row, position) => ({row, position, key: cellKey(row, index, numeric)}));
  rows.sort((a, b) => {
    if (a.key === null || b.key === null) {
      return a.key === b.key ? a.position - b.position : (a.key === null ? 1 : -1);
    }
    const order = a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
    return (descending ? -order : order) || a.position - b.position;
  });
  rows.forEach(item => body.appendChild(item.row));
  Array.from(header.parentNode.cells).forEach(th => th.setAttribute("aria-sort", "none"));
  header.setAttribute("aria-sort", descending ? "descending" : "ascending");
}

function showRule(name) {
  document.querySelectorAll("div.rule").forEach(block => { block.hidden = block.getAttribute("data-rule") !== name; });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("table.sortable").forEach(table => {
    Array.from(table.tHead.rows[0].cells).forEach((header, index) => {
      header.setAttribute("aria-sort", "none");
      header.setAttribute("tabindex", "0");
      header.addEventListener("click", () => sortTable(table, index, header));
      header.addEventListener("keydown", event => { if (event.key === "Enter") sortTable(table, index, header); });
    });
  });
  const rule = document.getElementById("rule");
  if (rule) {
    rule.addEventListener("change", () => showRule(rule.value));
    showRule(rule.value);
  }
});
