/**
 * Namespace well-formedness (Namespaces in XML 1.0, third edition, §3-§6 and the conformance
 * rules of §7) on top of saxes' plain, namespace-unaware events: QName syntax, bound prefixes,
 * the reserved `xml`/`xmlns` prefixes and namespace names, no prefix undeclaration in XML 1.0, and
 * attribute uniqueness by expanded name. Downstream consumers are namespace-aware (SOAP stacks,
 * JAXB, lxml), so a document that breaks these rules is one none of them would read (#11).
 *
 * saxes' own `xmlns: true` checks the same, but it builds a namespace object per element and an
 * object per attribute: on the partner corpus (bench/xml-check-cost.ts, 90 documents, mean 7 KB)
 * it added 17 µs per document to bare saxes (+27 %), where these checks add 8 µs (+10 %) to the
 * whole XmlChecker. An element without declarations or colons costs a look at each attribute
 * name as saxes reads it and allocates nothing.
 */

const XML_NAMESPACE = 'http://www.w3.org/XML/1998/namespace';
const XMLNS_NAMESPACE = 'http://www.w3.org/2000/xmlns/';
const COLON = 0x3a;
const LOWER_X = 0x78;

/**
 * The prefix bindings in scope while a document is read. Each check returns the problem as a
 * sentence for the partner, or undefined; the caller turns it into an XmlError with a position.
 */
export class NamespaceScope {
  // Parallel stacks, innermost binding last: prefix, namespace name ('' = undeclared, XML 1.1),
  // and the depth of the element that declared it (popped when that element closes).
  readonly #prefixes: string[] = [];
  readonly #uris: string[] = [];
  readonly #depths: number[] = [];
  /** The start tag being read: its declarations as name, value pairs, its prefixed attributes. */
  readonly #pendingDeclarations: string[] = [];
  readonly #pendingPrefixed: string[] = [];
  /** Scratch: the namespace of each of #pendingPrefixed, while they are checked. */
  readonly #pendingUris: string[] = [];
  /** XML 1.1 (Namespaces 1.1) allows `xmlns:p=""` to undeclare a prefix; 1.0 does not. */
  #undeclareAllowed = false;

  /** Called with the XML declaration's version before the root element. */
  setVersion(version: string | undefined): void {
    this.#undeclareAllowed = version === '1.1';
  }

  /**
   * Notes one attribute of the start tag being read (saxes' `attribute` event, in document order,
   * before the tag's `opentag`): a declaration, a prefixed attribute, or nothing to check. Cheaper
   * than walking the finished tag's attribute object, which V8 keeps in dictionary mode.
   */
  attribute(name: string, value: string): void {
    if (isDeclaration(name)) {
      this.#pendingDeclarations.push(name, value);
    } else if (name.includes(':')) {
      this.#pendingPrefixed.push(name);
    }
  }

  /**
   * Checks an element's start tag, its attributes as noted by attribute(), and brings its
   * namespace declarations into scope for it and its descendants. `depth` is the element's depth
   * (root 1).
   */
  openTag(name: string, depth: number): string | undefined {
    const declarations = this.#pendingDeclarations;
    const prefixed = this.#pendingPrefixed;
    // Declarations first: they apply to the element's own name and to all its attributes,
    // whatever the attribute order.
    if (declarations.length > 0) {
      for (let i = 0; i < declarations.length; i += 2) {
        const problem = this.#declare(declarations[i] ?? '', declarations[i + 1] ?? '', depth);
        if (problem !== undefined) return problem;
      }
      declarations.length = 0;
    }

    const colon = name.indexOf(':');
    if (colon !== -1) {
      const problem = qnameProblem(name, colon, 'element');
      if (problem !== undefined) return problem;
      if (colon === 5 && name.startsWith('xmlns')) {
        return `element name "${name}": the prefix xmlns is reserved for namespace declarations`;
      }
      if (this.#lookup(name, colon) === undefined) {
        return `element name "${name}": namespace prefix "${name.slice(0, colon)}" is not declared`;
      }
    }

    if (prefixed.length === 0) return undefined;
    const problem = this.#checkPrefixedAttributes(prefixed);
    prefixed.length = 0;
    return problem;
  }

  /** Drops the declarations of the element at `depth`, which has just closed. */
  closeTag(depth: number): void {
    const depths = this.#depths;
    while (depths.length > 0 && depths[depths.length - 1] === depth) {
      depths.pop();
      this.#prefixes.pop();
      this.#uris.pop();
    }
  }

  #checkPrefixedAttributes(names: readonly string[]): string | undefined {
    const uris = this.#pendingUris;
    uris.length = 0;
    for (const attribute of names) {
      const colon = attribute.indexOf(':');
      const problem = qnameProblem(attribute, colon, 'attribute');
      if (problem !== undefined) return problem;
      const uri = this.#lookup(attribute, colon);
      if (uri === undefined) {
        return `attribute "${attribute}": namespace prefix "${attribute.slice(0, colon)}" is not declared`;
      }
      uris.push(uri);
    }
    // Only two prefixed attributes can share an expanded name (unprefixed ones are in no
    // namespace, declarations in the xmlns one no prefix may be bound to). Tags carry a few
    // prefixed attributes, so pairs are compared in place rather than through a Set of keys.
    for (let i = 1; i < names.length; i++) {
      for (let j = 0; j < i; j++) {
        const a = names[i] as string; // i, j < names.length
        const b = names[j] as string;
        if (uris[i] === uris[j] && sameLocalName(a, b)) {
          return `attributes "${b}" and "${a}" are the same attribute {${uris[i] ?? ''}}${a.slice(a.indexOf(':') + 1)}: their prefixes are bound to the same namespace`;
        }
      }
    }
    return undefined;
  }

  /** `xmlns` or `xmlns:p` with its value: checks the reserved names and binds the prefix. */
  #declare(attribute: string, uri: string, depth: number): string | undefined {
    if (attribute.length === 5) {
      if (uri === XML_NAMESPACE || uri === XMLNS_NAMESPACE) {
        return `xmlns="${uri}": the default namespace must not be the reserved namespace ${uri}`;
      }
      // The default namespace never applies to attributes and no element name can fail to
      // resolve through it, so it needs no tracking.
      return undefined;
    }
    const prefix = attribute.slice(6);
    if (prefix === '' || prefix.includes(':')) {
      return `"${attribute}" is not a namespace declaration: the prefix must be a name without colons`;
    }
    if (prefix === 'xmlns') {
      return `"${attribute}": the prefix xmlns is reserved and must not be declared`;
    }
    if (prefix === 'xml') {
      if (uri !== XML_NAMESPACE) {
        return `"${attribute}": the prefix xml may only be bound to ${XML_NAMESPACE}`;
      }
      return undefined;
    }
    if (uri === XML_NAMESPACE || uri === XMLNS_NAMESPACE) {
      return `"${attribute}": no prefix other than ${uri === XML_NAMESPACE ? 'xml' : 'xmlns'} may be bound to ${uri}`;
    }
    if (uri === '' && !this.#undeclareAllowed) {
      return `${attribute}="": a prefix cannot be undeclared in XML 1.0`;
    }
    this.#prefixes.push(prefix);
    this.#uris.push(uri);
    this.#depths.push(depth);
    return undefined;
  }

  /** The namespace bound to the prefix `qname.slice(0, colon)`; undefined when it is not bound. */
  #lookup(qname: string, colon: number): string | undefined {
    if (colon === 3 && qname.startsWith('xml')) return XML_NAMESPACE;
    const prefixes = this.#prefixes;
    for (let i = prefixes.length - 1; i >= 0; i--) {
      const prefix = prefixes[i] as string; // i is within bounds
      if (prefix.length === colon && qname.startsWith(prefix)) {
        const uri = this.#uris[i];
        return uri === '' ? undefined : uri;
      }
    }
    return undefined;
  }
}

/** Whether two prefixed names (one colon each) have the same local part. */
function sameLocalName(a: string, b: string): boolean {
  const local = a.length - a.indexOf(':');
  return local === b.length - b.indexOf(':') && a.endsWith(b.slice(b.length - local + 1));
}

/** `xmlns` or `xmlns:…`; `xmlnsfoo` is an ordinary (if reserved-looking) attribute name. */
function isDeclaration(attribute: string): boolean {
  return (
    attribute.charCodeAt(0) === LOWER_X &&
    attribute.startsWith('xmlns') &&
    (attribute.length === 5 || attribute.charCodeAt(5) === COLON)
  );
}

/** saxes has already checked the XML Name production; a QName adds: one colon, not at an end. */
export function qnameProblem(
  name: string,
  colon: number,
  what: 'element' | 'attribute',
): string | undefined {
  if (colon === 0 || colon === name.length - 1 || name.indexOf(':', colon + 1) !== -1) {
    return `${what} name "${name}" is not a qualified name: at most one colon, between a prefix and a local name`;
  }
  return undefined;
}

/** PI targets (and entity and notation names) contain no colon at all (Namespaces §7). */
export function piTargetProblem(target: string): string | undefined {
  return target.includes(':')
    ? `processing instruction target "${target}" contains a colon`
    : undefined;
}
