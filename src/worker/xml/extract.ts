/** Routing-key templates: `orders.{/xml/MsgType}` compiled once per route, rendered from the values XmlChecker extracted. */

export interface CompiledTemplate {
  /** Distinct placeholder paths in order of first appearance: pass these as XmlChecker's `extract`. */
  readonly paths: readonly string[];
  /** A path without a value renders as the empty string. */
  render(values: ReadonlyMap<string, string>): string;
}

// Syntax is validated by the config schema; here a placeholder is any `{…}` group.
const PLACEHOLDER = /\{([^{}]*)\}/g;

export function compileTemplate(template: string): CompiledTemplate {
  // Alternating literal / path parts: literals at even indexes, paths at odd ones.
  const parts = template.split(PLACEHOLDER);
  if (parts.length === 1) {
    return { paths: [], render: () => template };
  }
  const paths: string[] = [];
  for (let i = 1; i < parts.length; i += 2) {
    const path = parts[i] ?? '';
    if (!paths.includes(path)) paths.push(path);
  }
  return {
    paths,
    render(values) {
      let out = parts[0] ?? '';
      for (let i = 1; i < parts.length; i += 2) {
        out += (values.get(parts[i] ?? '') ?? '') + (parts[i + 1] ?? '');
      }
      return out;
    },
  };
}
