// Swagger UI on /docs, from the local package (not a CDN): the API's schema, try-it-out with a key.
window.addEventListener("DOMContentLoaded", () => {
  window.SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true});
});
