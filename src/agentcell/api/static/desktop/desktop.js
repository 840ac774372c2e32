// The live desktop of a cell: noVNC's RFB client (the @novnc/novnc package, served by this
// server from web/node_modules) on the WebSocket bridge to the cell's VNC server. View only
// until the user takes control (keyboard and mouse), and hands it back.
import RFB from "./novnc/core/rfb.js";

const params = new URLSearchParams(location.search);
const token = params.get("token");
// The token is in the address once; the page keeps it, the address bar does not.
history.replaceState(null, "", location.pathname);

const status = document.getElementById("status");
const control = document.getElementById("control");
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const url = `${scheme}//${location.host}${location.pathname.replace(/\/[^/]*$/, "/")}websockify?token=${encodeURIComponent(token || "")}`;

const rfb = new RFB(document.getElementById("screen"), url, { shared: true });
rfb.viewOnly = true;
rfb.scaleViewport = true;
rfb.background = "#1e1e1e";

function setControl(taking) {
  rfb.viewOnly = !taking;
  control.setAttribute("aria-pressed", String(taking));
  control.textContent = taking ? "Hand back" : "Take control";
  status.textContent = taking ? "you have keyboard and mouse" : "watching (view only)";
  if (taking) rfb.focus();
}

rfb.addEventListener("connect", () => {
  control.disabled = false;
  setControl(false);
});
rfb.addEventListener("disconnect", (event) => {
  control.disabled = true;
  status.textContent = event.detail.clean
    ? "disconnected"
    : "the desktop could not be reached: get a new link (GET /v1/cell/desktop, or agentcell desktop)";
});
control.addEventListener("click", () => setControl(rfb.viewOnly));
window.agentcellDesktop = rfb; // for tests and the web page
