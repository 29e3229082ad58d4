// Building the page from data without ever parsing data as HTML: every string becomes a text
// node (or an attribute value, or a form field's value), never markup.

// h("tag.class", {attr: value, on: {click: fn}}, ...children): an element.  Children are nodes,
// strings (text), or arrays of either; null, undefined and false are skipped.
export function h(spec, props = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const element = document.createElement(tag || "div");
  if (classes.length) element.className = classes.join(" ");
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "on") {
      for (const [event, handler] of Object.entries(value)) element.addEventListener(event, handler);
    } else if (name === "value") {
      element.value = value;
    } else if (name === "text") {
      element.textContent = value;
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else if (child instanceof Node) element.append(child);
    else element.append(document.createTextNode(String(child)));
  }
}

// Replace an element's children.
export function mount(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

// JSON as text for a field: compact for scalars and short values, indented for the rest.
export function jsonText(value) {
  const compact = JSON.stringify(value);
  if (value === null || typeof value !== "object" || compact.length <= 48) return compact;
  return JSON.stringify(value, null, 2);
}

// A timestamp as the reader's local date and time; "" for null.
export function when(timestamp) {
  return timestamp ? new Date(timestamp).toLocaleString() : "";
}
