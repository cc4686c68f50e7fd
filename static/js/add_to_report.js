/* "Add to report" on the pages that show runs: the page's current view, as report blocks,
   into an existing report or a new one. A page calls Trainwatch.addToReport(button, makeBlocks)
   where makeBlocks() returns the blocks of what it shows now (its URL state). */
"use strict";

(function () {
  const T = window.Trainwatch;

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  /* A JSON request to our API; the answer's body, or an Error whose message names each field. */
  async function sendJSON(method, url, body) {
    const response = await fetch(url, {
      method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(Object.entries(answer.errors || { request: `HTTP ${response.status}` })
        .map(([field, message]) => `${field}: ${message}`).join("; "));
      error.status = response.status;
      throw error;
    }
    return answer;
  }

  function option(value, text) {
    const element = document.createElement("option");
    element.value = value;
    element.textContent = text;
    return element;
  }

  function dialog() {
    let found = document.getElementById("add-to-report");
    if (found) return found;
    found = document.createElement("dialog");
    found.id = "add-to-report";
    found.className = "panel";
    found.innerHTML = `
      <form method="dialog" class="stacked">
        <h2>Add to report</h2>
        <label>Report <select name="report"></select></label>
        <label class="new-only">Title of the new report <input name="title" maxlength="200"></label>
        <label class="new-only">Project <select name="project"></select></label>
        <p class="error" hidden></p>
        <p class="done" hidden></p>
        <div class="buttons"><button type="submit" value="add" class="primary">Add</button>
          <button type="submit" value="cancel" formnovalidate>Close</button></div>
      </form>`;
    document.body.append(found);
    const form = found.querySelector("form");
    form.report.addEventListener("change", () => {
      found.querySelectorAll(".new-only").forEach((label) => { label.hidden = form.report.value !== "new"; });
    });
    return found;
  }

  function addToReport(button, makeBlocks) {
    button.addEventListener("click", async () => {
      const box = dialog();
      const form = box.querySelector("form");
      const error = box.querySelector(".error");
      const done = box.querySelector(".done");
      error.hidden = true;
      done.hidden = true;
      const listed = await T.fetchJSON("/api/reports/");
      form.report.replaceChildren(option("new", "a new report"),
        ...listed.reports.map((report) => option(String(report.id), `${report.title} (${report.project})`)));
      form.project.replaceChildren(...listed.projects.map((name) => option(name, name)));
      form.report.dispatchEvent(new Event("change"));
      form.onsubmit = async (event) => {
        if (event.submitter && event.submitter.value === "cancel") return;
        event.preventDefault();
        error.hidden = true;
        try {
          const blocks = makeBlocks();
          let url;
          if (form.report.value === "new") {
            const made = await sendJSON("POST", "/api/reports/",
              { project: form.project.value, title: form.title.value, blocks });
            url = made.url;
          } else {
            let answer;
            for (const block of blocks) {
              answer = await sendJSON("POST", `/api/reports/${form.report.value}/blocks/`, { block });
            }
            url = answer.report.url;
          }
          done.hidden = false;
          done.replaceChildren("Added. ");
          const link = document.createElement("a");
          link.href = url;
          link.textContent = "Open the report";
          link.id = "added-report-link";
          done.append(link);
        } catch (failure) {
          error.hidden = false;
          error.textContent = failure.message;
        }
      };
      box.showModal();
    });
  }

  T.sendJSON = sendJSON;
  T.addToReport = addToReport;
  // a page whose view the server describes: <button data-add-to-report="<json_script id>">
  document.querySelectorAll("button[data-add-to-report]").forEach((button) => {
    const source = document.getElementById(button.dataset.addToReport);
    if (source) addToReport(button, () => JSON.parse(source.textContent));
  });
})();
