// The cell's live desktop (full image): the viewer page in a frame, view-only until the user
// takes control (its own button).
import {get} from "/static/js/api.js";
import {clear, errorBox, h} from "/static/js/dom.js";

export async function mount(root) {
  clear(root, h("p", {class: "muted", id: "desktop-status"}, "Starting the desktop…"));
  try {
    const desktop = await get("/v1/cell/desktop");
    clear(root,
      h("p", {class: "hint"}, `The display of your cell (${desktop.width}×${desktop.height}): watch the ` +
        "browser agent work; “Take control” lends it your keyboard and mouse."),
      h("iframe", {id: "desktop-frame", src: desktop.url, title: "The cell's live desktop"}));
  } catch (error) {
    clear(root, errorBox(error));
  }
}
