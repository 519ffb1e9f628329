/** Unit tests of routing-key templates (compileTemplate). */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileTemplate } from '../../src/worker/xml/extract.js';

describe('compileTemplate', () => {
  it('renders a template without placeholders as itself', () => {
    const t = compileTemplate('orders.created');
    assert.deepEqual(t.paths, []);
    assert.equal(t.render(new Map()), 'orders.created');
    assert.equal(compileTemplate('').render(new Map()), '');
  });

  it('substitutes element and attribute paths', () => {
    const t = compileTemplate('wechat.{/xml/MsgType}.{/xml/Event}.{/Invoice/@version}');
    assert.deepEqual(t.paths, ['/xml/MsgType', '/xml/Event', '/Invoice/@version']);
    const values = new Map([
      ['/xml/MsgType', 'event'],
      ['/xml/Event', 'subscribe'],
      ['/Invoice/@version', '2.1'],
    ]);
    assert.equal(t.render(values), 'wechat.event.subscribe.2.1');
  });

  it('renders a missing value as the empty string', () => {
    const t = compileTemplate('a.{/xml/MsgType}.b');
    assert.equal(t.render(new Map()), 'a..b');
    assert.equal(t.render(new Map([['/xml/Other', 'x']])), 'a..b');
  });

  it('handles placeholders at the edges and adjacent placeholders', () => {
    const t = compileTemplate('{/r/a}{/r/b}');
    assert.deepEqual(t.paths, ['/r/a', '/r/b']);
    assert.equal(
      t.render(
        new Map([
          ['/r/a', 'x'],
          ['/r/b', 'y'],
        ]),
      ),
      'xy',
    );
    assert.equal(compileTemplate('{/r/a}').render(new Map([['/r/a', 'only']])), 'only');
  });

  it('lists a repeated path once and renders it everywhere', () => {
    const t = compileTemplate('{/r/a}.{/r/b}.{/r/a}');
    assert.deepEqual(t.paths, ['/r/a', '/r/b']);
    assert.equal(
      t.render(
        new Map([
          ['/r/a', '1'],
          ['/r/b', '2'],
        ]),
      ),
      '1.2.1',
    );
  });

  it('keeps prefixed names and non-ASCII names verbatim', () => {
    const t = compileTemplate('soap.{/soap:Envelope/soap:Body/m:Op/@m:id}.{/中/文}');
    assert.deepEqual(t.paths, ['/soap:Envelope/soap:Body/m:Op/@m:id', '/中/文']);
    assert.equal(t.render(new Map([['/中/文', 'z']])), 'soap..z');
  });

  it('does not interpret replacement patterns in values', () => {
    const t = compileTemplate('k.{/a}');
    assert.equal(t.render(new Map([['/a', '$&$1$$']])), 'k.$&$1$$');
  });

  it('renders repeatedly with different values', () => {
    const t = compileTemplate('q.{/xml/MsgType}');
    assert.equal(t.render(new Map([['/xml/MsgType', 'text']])), 'q.text');
    assert.equal(t.render(new Map([['/xml/MsgType', 'image']])), 'q.image');
  });
});
