/**
 * The element paths a route reads from a body (`/xml/MsgType`, `/a/b/@attr`), compiled once per
 * route into a trie, and the per-document matcher that follows the parser's open and close tags
 * down that trie only, collecting the first value of each path.
 */
import type { SaxesTagPlain } from 'saxes';

interface PathNode {
  readonly children: Map<string, PathNode>;
  /** Set when this element's text content is requested. */
  textPath: string | undefined;
  readonly attributes: Array<{ readonly name: string; readonly path: string }>;
}

export interface CompiledPaths {
  readonly root: PathNode;
  /** False when only attributes are requested: then no text is ever collected. */
  readonly wantsText: boolean;
}

function newNode(): PathNode {
  return { children: new Map(), textPath: undefined, attributes: [] };
}

/** Throws TypeError for a path that is not absolute or names no element (the config schema prevents both). */
export function compilePaths(paths: readonly string[]): CompiledPaths {
  const root = newNode();
  let wantsText = false;
  for (const path of paths) {
    const steps = path.split('/');
    if (steps[0] !== '' || steps.length < 2 || steps.some((s, i) => i > 0 && s === '')) {
      throw new TypeError(
        `extract path ${JSON.stringify(path)} must be absolute, like /xml/MsgType or /a/b/@attr`,
      );
    }
    const last = steps[steps.length - 1] ?? '';
    const attribute = last.startsWith('@') ? last.slice(1) : undefined;
    const elementSteps = steps.slice(1, attribute === undefined ? steps.length : -1);
    if (elementSteps.length === 0 || attribute === '') {
      throw new TypeError(`extract path ${JSON.stringify(path)} must name at least one element`);
    }
    let node = root;
    for (const step of elementSteps) {
      let child = node.children.get(step);
      if (child === undefined) {
        child = newNode();
        node.children.set(step, child);
      }
      node = child;
    }
    if (attribute === undefined) {
      node.textPath = path;
      wantsText = true;
    } else if (!node.attributes.some((a) => a.name === attribute)) {
      node.attributes.push({ name: attribute, path });
    }
  }
  return { root, wantsText };
}

interface Capture {
  readonly path: string;
  readonly depth: number;
  text: string;
}

/**
 * Follows one document's elements down the trie. `openTag` returns true when text collection
 * starts (the caller then routes text and CDATA to `text`), `closeTag` true when it stops.
 */
export class PathMatcher {
  /** Depth of the deepest element on the current path that is still on a requested path. */
  #matchDepth = 0;
  readonly #stack: PathNode[];
  readonly #captures: Capture[] = [];
  readonly values = new Map<string, string>();

  constructor(paths: CompiledPaths) {
    this.#stack = [paths.root];
  }

  openTag(tag: SaxesTagPlain, depth: number): boolean {
    // Only descend the trie while every ancestor matched a requested path.
    if (depth !== this.#matchDepth + 1) return false;
    const node = this.#stack[this.#matchDepth]?.children.get(tag.name);
    if (node === undefined) return false;
    this.#matchDepth = depth;
    this.#stack[depth] = node;
    let started = false;
    if (node.textPath !== undefined && !this.values.has(node.textPath)) {
      started = this.#captures.length === 0;
      this.#captures.push({ path: node.textPath, depth, text: '' });
    }
    for (const { name, path } of node.attributes) {
      if (this.values.has(path)) continue;
      const value = tag.attributes[name];
      if (value !== undefined) this.values.set(path, value);
    }
    return started;
  }

  closeTag(depth: number): boolean {
    if (depth !== this.#matchDepth) return false;
    this.#matchDepth--;
    const capture = this.#captures[this.#captures.length - 1];
    if (capture === undefined || capture.depth !== depth) return false;
    this.#captures.pop();
    this.values.set(capture.path, capture.text);
    return this.#captures.length === 0;
  }

  readonly text = (text: string): void => {
    for (const capture of this.#captures) capture.text += text;
  };
}
