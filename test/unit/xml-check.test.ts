/** Unit tests of XmlChecker (streaming well-formedness, limits, DOCTYPE policy, extraction) and of sniffEncoding. */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { XmlError, type XmlRejectReason } from '../../src/shared/errors.js';
import { XmlChecker, type XmlCheckOptions, type XmlSummary } from '../../src/worker/xml/check.js';
import { compilePaths } from '../../src/worker/xml/paths.js';
import { sniffEncoding } from '../../src/worker/xml/encoding.js';

const utf8 = new TextEncoder();

/** Concatenates UTF-8 text and literal byte runs. */
function bytes(...parts: ReadonlyArray<string | readonly number[]>): Uint8Array {
  const chunks = parts.map((p) => (typeof p === 'string' ? utf8.encode(p) : Uint8Array.from(p)));
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** UTF-16 code units of `s` as bytes, with an optional BOM. */
function utf16(s: string, endian: 'le' | 'be', bom: boolean): Uint8Array {
  const out = new Uint8Array((s.length + (bom ? 1 : 0)) * 2);
  const view = new DataView(out.buffer);
  let at = 0;
  if (bom) {
    view.setUint16(0, 0xfeff, endian === 'le');
    at = 2;
  }
  for (let i = 0; i < s.length; i++, at += 2) view.setUint16(at, s.charCodeAt(i), endian === 'le');
  return out;
}

const DEFAULTS: XmlCheckOptions = { maxDepth: 64, allowDoctype: false };

/** Checker options with the element paths to extract written out, as routes declare them. */
type CheckOptions = Partial<XmlCheckOptions> & { readonly extract?: readonly string[] };

function newChecker(options: CheckOptions = {}): XmlChecker {
  const { extract, ...rest } = options;
  return new XmlChecker({
    ...DEFAULTS,
    ...rest,
    paths: extract === undefined || extract.length === 0 ? undefined : compilePaths(extract),
  });
}

/**
 * Runs a document through a fresh checker. `chunkSize` splits the body; each chunk is fed from a
 * reused scratch buffer that is overwritten after feed() returns, as the socket layer does.
 */
function check(
  doc: Uint8Array | string,
  options: CheckOptions = {},
  chunkSize?: number,
): XmlSummary {
  const body = typeof doc === 'string' ? utf8.encode(doc) : doc;
  const c = newChecker(options);
  if (chunkSize === undefined) {
    // As the HTTP layer feeds a body that arrived in one piece.
    c.feed(body, true);
  } else {
    const scratch = new Uint8Array(chunkSize);
    for (let at = 0; at < body.length; at += chunkSize) {
      const piece = body.subarray(at, at + chunkSize);
      scratch.set(piece);
      c.feed(scratch.subarray(0, piece.length), at + chunkSize >= body.length);
      scratch.fill(0xff);
    }
  }
  return c.end();
}

function rejects(reason: XmlRejectReason, message?: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof XmlError, `expected XmlError, got ${String(err)}`);
    assert.equal(err.reason, reason, `reason for: ${err.message}`);
    if (message !== undefined) assert.match(err.message, message);
    return true;
  };
}

function plain(summary: XmlSummary): { root: string; values: Record<string, string> } {
  return { root: summary.root, values: Object.fromEntries(summary.values) };
}

const WECHAT = `<xml>
<ToUserName><![CDATA[gh_7f083739789a]]></ToUserName>
<FromUserName><![CDATA[oia2TjuEGTNoeX76QEjQNrcURxG8]]></FromUserName>
<CreateTime>1395658920</CreateTime>
<MsgType><![CDATA[text]]></MsgType>
<Content><![CDATA[你好，世界 😀]]></Content>
<MsgId>1234567890123456</MsgId>
</xml>`;

describe('XmlChecker: well-formed documents', () => {
  it('accepts a WeChat message with CDATA and CJK text and extracts values', () => {
    const s = check(WECHAT, { extract: ['/xml/MsgType', '/xml/Content', '/xml/CreateTime'] });
    assert.deepEqual(plain(s), {
      root: 'xml',
      values: {
        '/xml/MsgType': 'text',
        '/xml/Content': '你好，世界 😀',
        '/xml/CreateTime': '1395658920',
      },
    });
  });

  it('reports the qualified root name with namespaces (xmlns is not processed)', () => {
    const doc = `<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:u="urn:x">
  <soap:Body><u:Op u:id="7">x</u:Op></soap:Body>
</soap:Envelope>`;
    const s = check(doc, {
      extract: ['/soap:Envelope/soap:Body/u:Op', '/soap:Envelope/soap:Body/u:Op/@u:id'],
    });
    assert.deepEqual(plain(s), {
      root: 'soap:Envelope',
      values: { '/soap:Envelope/soap:Body/u:Op': 'x', '/soap:Envelope/soap:Body/u:Op/@u:id': '7' },
    });
  });

  it('accepts the xml prefix undeclared, and prefixes declared on the element or an ancestor', () => {
    assert.equal(check('<r xml:lang="en"><xml:x/></r>').root, 'r');
    assert.equal(check('<a:b xmlns:a="urn:a" a:c="1"><a:d/></a:b>').root, 'a:b');
    assert.equal(check('<r><a:b a:c="1" xmlns:a="urn:a"/></r>').root, 'r');
    assert.equal(check('<r xmlns="urn:d" xmlnsfoo="not a declaration"><x/></r>').root, 'r');
    assert.equal(check('<r xmlns:xml="http://www.w3.org/XML/1998/namespace"/>').root, 'r');
  });

  it('accepts attributes, comments, PIs and whitespace around the root', () => {
    const doc =
      '<?xml version="1.0"?>\n<!-- c --><?pi x?>\n<r a="1" b=\'2\'><x/></r>\n<!-- after -->\n';
    assert.equal(check(doc).root, 'r');
  });

  it('accepts a UTF-8 BOM with and without a declaration', () => {
    assert.equal(check(bytes([0xef, 0xbb, 0xbf], '<?xml version="1.0"?><a/>')).root, 'a');
    assert.equal(check(bytes([0xef, 0xbb, 0xbf], '<a/>')).root, 'a');
  });

  it('decodes UTF-16LE/BE with a BOM, and without one where the declaration names the byte order', () => {
    const opts = { extract: ['/中', '/中/@a'] };
    const variants: ReadonlyArray<readonly ['le' | 'be', boolean, string]> = [
      ['le', true, 'UTF-16'],
      ['be', true, 'UTF-16'],
      ['le', true, 'utf-16le'],
      ['be', true, 'UTF-16BE'],
      ['le', false, 'UTF-16LE'],
      ['be', false, 'utf-16be'],
    ];
    for (const [endian, bom, label] of variants) {
      const doc = `<?xml version="1.0" encoding="${label}"?><中 a="é">文</中>`;
      assert.deepEqual(
        plain(check(utf16(doc, endian, bom), opts)),
        { root: '中', values: { '/中': '文', '/中/@a': 'é' } },
        `${endian} bom=${bom} ${label}`,
      );
    }
  });

  it('takes a BOM-less UTF-16 declaration without encoding from a Content-Type naming the byte order', () => {
    const doc = utf16('<?xml version="1.0"?><a>é</a>', 'be', false);
    const s = check(doc, { contentTypeCharset: 'UTF-16BE', extract: ['/a'] });
    assert.equal(s.values.get('/a'), 'é');
  });

  it('decodes Latin-1 and windows-1252 from the declaration', () => {
    const doc = bytes(
      "<?xml version='1.0' encoding='ISO-8859-1'?><tr",
      [0xe8],
      's>',
      [0x80],
      '</tr',
      [0xe8],
      's>',
    );
    assert.deepEqual(plain(check(doc, { extract: ['/très'] })), {
      root: 'très',
      values: { '/très': '€' },
    });
  });

  it('decodes GB18030 four-byte sequences under a gb2312/GBK declaration', () => {
    // A2 E3 = €, D6 D0 = 中, 81 30 84 32 = U+00A0, 94 39 DA 33 = U+1F4A9 (four-byte forms the
    // WHATWG gbk decoder rejects).
    for (const label of ['gb2312', 'GBK', 'x-gbk', 'GB_2312-80', 'gb18030']) {
      const doc = bytes(
        `<?xml version="1.0" encoding="${label}"?><x>`,
        [0xa2, 0xe3, 0xd6, 0xd0, 0x81, 0x30, 0x84, 0x32, 0x94, 0x39, 0xda, 0x33],
        '</x>',
      );
      assert.deepEqual(
        plain(check(doc, { extract: ['/x'] })),
        { root: 'x', values: { '/x': '€中\u00a0\u{1f4a9}' } },
        label,
      );
      assert.deepEqual(
        plain(check(doc, { extract: ['/x'] }, 1)),
        { root: 'x', values: { '/x': '€中\u00a0\u{1f4a9}' } },
        `${label}, 1-byte chunks`,
      );
    }
  });

  it('uses the Content-Type charset when there is no declaration, and the declaration over it', () => {
    const gbBody = bytes('<x>', [0xd6, 0xd0], '</x>');
    assert.equal(
      check(gbBody, { contentTypeCharset: 'GBK', extract: ['/x'] }).values.get('/x'),
      '中',
    );
    assert.equal(
      check(gbBody, { contentTypeCharset: '"gb2312"', extract: ['/x'] }).values.get('/x'),
      '中',
    );
    const declared = bytes('<?xml version="1.0" encoding="utf-8"?><x>中</x>');
    assert.equal(
      check(declared, { contentTypeCharset: 'gbk', extract: ['/x'] }).values.get('/x'),
      '中',
    );
  });

  it('trusts a BOM over the Content-Type charset', () => {
    for (const decl of ['', '<?xml version="1.0" encoding="utf-8"?>', '<?xml version="1.0"?>']) {
      const doc = bytes([0xef, 0xbb, 0xbf], `${decl}<x>é</x>`);
      assert.equal(
        check(doc, { contentTypeCharset: 'shift_jis', extract: ['/x'] }).values.get('/x'),
        'é',
        decl,
      );
    }
    const le = utf16('<x>é</x>', 'le', true);
    assert.equal(check(le, { contentTypeCharset: 'utf-8', extract: ['/x'] }).values.get('/x'), 'é');
  });
});

describe('XmlChecker: chunking', () => {
  const docs: ReadonlyArray<readonly [string, Uint8Array]> = [
    ['wechat', utf8.encode(WECHAT)],
    [
      'utf-8 BOM + decl',
      bytes(
        [0xef, 0xbb, 0xbf],
        '<?xml version="1.0" encoding="utf-8"?><a b="&lt;&#x4e2d;">x<![CDATA[<y>]]>&amp;z</a>',
      ),
    ],
    ['utf-16le BOM', utf16('<?xml version="1.0"?><a>𝄞 中</a>', 'le', true)],
    ['utf-16be no BOM', utf16('<?xml version="1.0" encoding="UTF-16BE"?><a>𝄞 中</a>', 'be', false)],
    [
      'gb18030',
      bytes(
        '<?xml version="1.0" encoding="gb2312"?><a>',
        [0x94, 0x39, 0xda, 0x33, 0xd6, 0xd0],
        '</a>',
      ),
    ],
    [
      'shift_jis',
      bytes("<?xml version='1.0' encoding='Shift_JIS'?><a>", [0x82, 0xa0, 0x93, 0xfa], '</a>'),
    ],
    ['CRLF', utf8.encode('<a>\r\n<b>1\r\n2</b>\r\n</a>\r\n')],
    ['tiny', utf8.encode('<a/>')],
  ];

  for (const [name, doc] of docs) {
    it(`gives the same summary for every chunk size: ${name}`, () => {
      const options = { extract: ['/a', '/xml/Content', '/a/@b', '/a/b'] };
      const whole = plain(check(doc, options));
      for (const size of [1, 2, 3, 5, 7, 64]) {
        assert.deepEqual(plain(check(doc, options, size)), whole, `chunk size ${size}`);
      }
    });
  }

  it('decodes a multibyte character split at every position of a chunk edge', () => {
    const doc = utf8.encode('<a>中😀é</a>');
    for (let cut = 1; cut < doc.length; cut++) {
      const checker = newChecker({ extract: ['/a'] });
      checker.feed(doc.subarray(0, cut));
      checker.feed(doc.subarray(cut));
      assert.equal(checker.end().values.get('/a'), '中😀é', `cut at ${cut}`);
    }
  });

  it('does not keep a reference to a fed chunk while the declaration is incomplete', () => {
    const doc = utf8.encode('<?xml version="1.0" encoding="ISO-8859-1"?><a>x</a>');
    const checker = newChecker({ extract: ['/a'] });
    const scratch = new Uint8Array(10);
    scratch.set(doc.subarray(0, 10));
    checker.feed(scratch);
    scratch.fill(0x20); // the caller reuses its buffer
    checker.feed(doc.subarray(10));
    assert.equal(checker.end().values.get('/a'), 'x');
  });

  it('ignores empty chunks', () => {
    const checker = newChecker();
    checker.feed(new Uint8Array(0));
    checker.feed(utf8.encode('<a/>'));
    checker.feed(new Uint8Array(0));
    assert.equal(checker.end().root, 'a');
  });
});

describe('XmlChecker: refusals', () => {
  it('refuses invalid UTF-8 as encoding', () => {
    assert.throws(() => check(bytes('<a>', [0xc3, 0x28], '</a>')), rejects('encoding', /utf-8/));
    assert.throws(() => check(bytes('<a>', [0xff], '</a>'), {}, 1), rejects('encoding'));
  });

  it('refuses a body that ends inside a multibyte character as encoding', () => {
    assert.throws(
      () => check(bytes('<a/>', [0xe4, 0xb8])),
      rejects('encoding', /middle of a character/),
    );
  });

  it('refuses bytes invalid for the declared encoding', () => {
    assert.throws(
      () => check(bytes('<?xml version="1.0" encoding="Shift_JIS"?><a>', [0x82, 0xff], '</a>')),
      rejects('encoding', /shift_jis/),
    );
  });

  it('refuses an unknown encoding label, naming it', () => {
    assert.throws(
      () => check('<?xml version="1.0" encoding="x-klingon"?><a/>'),
      rejects('encoding', /"x-klingon".*XML declaration/),
    );
    assert.throws(
      () => check('<a/>', { contentTypeCharset: 'utf-32' }),
      rejects('encoding', /"utf-32".*Content-Type/),
    );
  });

  it('refuses two roots, text after the root, a truncated document', () => {
    assert.throws(() => check('<a/><b/>'), rejects('malformed', /only one root/));
    assert.throws(() => check('<a/>text'), rejects('malformed', /outside of root/));
    assert.throws(() => check('<a><b></b>'), rejects('malformed', /unclosed tag: a/));
    assert.throws(() => check('<a><b'), rejects('malformed'));
  });

  it('refuses a document without root element as malformed, not empty', () => {
    assert.throws(() => check('<!-- only a comment -->'), rejects('malformed', /root element/));
    assert.throws(() => check('<?xml version="1.0"?>'), rejects('malformed'));
  });

  it('refuses an empty body, a BOM only, whitespace only as empty', () => {
    const message = /^empty body: an XML document is required$/;
    assert.throws(() => newChecker().end(), rejects('empty', message));
    assert.throws(() => check(''), rejects('empty', message));
    assert.throws(() => check(bytes([0xef, 0xbb, 0xbf])), rejects('empty', message));
    assert.throws(() => check(bytes([0xff, 0xfe])), rejects('empty', message));
    assert.throws(() => check(bytes([0xef, 0xbb, 0xbf], ' \r\n\t ')), rejects('empty', message));
    assert.throws(() => check(' \n', {}, 1), rejects('empty', message));
  });

  it('refuses whitespace before the XML declaration', () => {
    assert.throws(
      () => check(' <?xml version="1.0"?><a/>'),
      rejects('malformed', /XML declaration/),
    );
    assert.throws(
      () => check('\n<?xml version="1.0"?><a/>'),
      rejects('malformed', /XML declaration/),
    );
    assert.throws(
      () => check(bytes([0xef, 0xbb, 0xbf], '\n<?xml version="1.0"?><a/>')),
      rejects('malformed'),
    );
  });

  it('refuses a declaration that never ends within 1 KiB', () => {
    const doc = `<?xml version="1.0" ${' '.repeat(2000)}<a/>`;
    assert.throws(() => check(doc), rejects('malformed'));
    assert.throws(() => check(doc, {}, 100), rejects('malformed'));
  });

  it('refuses NUL and other disallowed characters', () => {
    assert.throws(() => check('<a>\u0000</a>'), rejects('malformed'));
    assert.throws(() => check('<a>&#0;</a>'), rejects('malformed'));
  });

  it('includes line and column in malformed messages', () => {
    assert.throws(
      () => check('<a>\n<b></c></a>'),
      rejects('malformed', /^malformed XML at line 2, column \d+: /),
    );
  });

  it('throws the same error on every call after the first failure', () => {
    const checker = newChecker();
    let first: unknown;
    try {
      checker.feed(utf8.encode('<a/><b/>'));
    } catch (err) {
      first = err;
    }
    assert.ok(first instanceof XmlError);
    assert.throws(
      () => checker.feed(utf8.encode('<c/>')),
      (err) => err === first,
    );
    assert.throws(
      () => checker.end(),
      (err) => err === first,
    );
  });
});

describe('XmlChecker: namespace well-formedness', () => {
  const refusedAsMalformed: ReadonlyArray<readonly [string, string, RegExp]> = [
    ['unbound element prefix', '<a:b/>', /prefix "a" is not declared/],
    ['unbound attribute prefix', '<r a:x="1"/>', /prefix "a" is not declared/],
    ['prefix used outside its scope', '<r><a:b xmlns:a="urn:a"/><a:c/></r>', /"a:c"/],
    ['two colons in an element name', '<a:b:c xmlns:a="urn:a"/>', /not a qualified name/],
    ['two colons in an attribute name', '<r xmlns:a="urn:a" a:b:c="1"/>', /not a qualified name/],
    ['colon at the end', '<r: />', /not a qualified name/],
    ['colon at the start', '<:r/>', /not a qualified name/],
    ['xmlns: without prefix', '<r xmlns:="urn:a"/>', /not a namespace declaration/],
    [
      'undeclaring a prefix in XML 1.0',
      '<a:r xmlns:a="urn:a"><a:s xmlns:a=""/></a:r>',
      /undeclared in XML 1.0/,
    ],
    ['xml bound elsewhere', '<r xmlns:xml="urn:x"/>', /prefix xml may only/],
    [
      'another prefix bound to the XML namespace',
      '<r xmlns:y="http://www.w3.org/XML/1998/namespace"/>',
      /no prefix other than xml/,
    ],
    ['xmlns declared', '<r xmlns:xmlns="http://www.w3.org/2000/xmlns/"/>', /xmlns is reserved/],
    [
      'a prefix bound to the xmlns namespace',
      '<r xmlns:y="http://www.w3.org/2000/xmlns/"/>',
      /no prefix other than xmlns/,
    ],
    [
      'default namespace = XML namespace',
      '<r xmlns="http://www.w3.org/XML/1998/namespace"/>',
      /default namespace/,
    ],
    ['xmlns as an element prefix', '<xmlns:r/>', /reserved for namespace declarations/],
    [
      'same expanded attribute name',
      '<r xmlns:a="urn:x" xmlns:b="urn:x"><s a:n="1" b:n="2"/></r>',
      /same attribute \{urn:x\}n/,
    ],
    ['colon in a PI target', '<?a:b x?><r/>', /processing instruction target "a:b"/],
  ];
  for (const [what, doc, message] of refusedAsMalformed) {
    it(`refuses ${what}`, () => {
      assert.throws(() => check(doc), rejects('malformed', message));
      assert.throws(() => check(doc, {}, 1), rejects('malformed', message), 'byte by byte');
    });
  }

  it('names the position and the rule', () => {
    assert.throws(
      () => check('<r>\n  <a:b/></r>'),
      rejects('malformed', /^malformed XML at line 2, column \d+: .*\(Namespaces in XML 1\.0\)$/),
    );
  });

  it('allows undeclaring a prefix in XML 1.1, after which it is unbound', () => {
    const decl = '<?xml version="1.1"?>';
    assert.equal(check(`${decl}<a:r xmlns:a="urn:a"><s xmlns:a=""/></a:r>`).root, 'a:r');
    assert.throws(
      () => check(`${decl}<a:r xmlns:a="urn:a"><a:s xmlns:a=""/></a:r>`),
      rejects('malformed', /prefix "a" is not declared/),
    );
  });

  it('restores an outer binding when an inner one goes out of scope', () => {
    const doc =
      '<a:r xmlns:a="urn:1"><a:s xmlns:a="urn:2" a:n="x"/><a:t b:n="1" a:n="2" xmlns:b="urn:2"/></a:r>';
    assert.equal(check(doc).root, 'a:r');
  });

  it('checks the DOCTYPE name and syntax when DOCTYPE is allowed', () => {
    const allow = { allowDoctype: true };
    assert.equal(check('<!DOCTYPE p:r SYSTEM "r.dtd"><p:r xmlns:p="urn:p"/>', allow).root, 'p:r');
    assert.throws(
      () => check('<!DOCTYPE a:b:c SYSTEM "r.dtd"><r/>', allow),
      rejects('malformed', /qualified name/),
    );
    assert.throws(
      () => check('<!DOCTYPE SYSTEM "r.dtd"><r/>', allow),
      rejects('malformed', /DOCTYPE must be/),
    );
    assert.throws(
      () => check('<!DOCTYPE r PUBLIC "a{b}" "r.dtd"><r/>', allow),
      rejects('malformed', /DOCTYPE must be/),
    );
    assert.throws(
      () => check('<!DOCTYPE r SYSTEM><r/>', allow),
      rejects('malformed', /DOCTYPE must be/),
    );
  });
});

describe('XmlChecker: the declared encoding must match the bytes', () => {
  const contradictions: ReadonlyArray<readonly [string, Uint8Array]> = [
    [
      'UTF-8 BOM, declared ISO-8859-1',
      bytes([0xef, 0xbb, 0xbf], '<?xml version="1.0" encoding="ISO-8859-1"?><x/>'),
    ],
    [
      'UTF-8 BOM, declared UTF-16',
      bytes([0xef, 0xbb, 0xbf], '<?xml version="1.0" encoding="UTF-16"?><x/>'),
    ],
    [
      'UTF-16LE BOM, declared UTF-8',
      utf16('<?xml version="1.0" encoding="UTF-8"?><x/>', 'le', true),
    ],
    [
      'UTF-16BE BOM, declared utf-8',
      utf16("<?xml version='1.0' encoding='utf-8'?><x/>", 'be', true),
    ],
    [
      'UTF-16BE BOM, declared UTF-16LE',
      utf16('<?xml version="1.0" encoding="UTF-16LE"?><x/>', 'be', true),
    ],
    [
      'UTF-16LE without BOM, declared UTF-16',
      utf16('<?xml version="1.0" encoding="UTF-16"?><x/>', 'le', false),
    ],
    [
      'UTF-16BE without BOM, declared UTF-16LE',
      utf16('<?xml version="1.0" encoding="UTF-16LE"?><x/>', 'be', false),
    ],
    ['UTF-16LE without BOM or encoding', utf16('<?xml version="1.0"?><x/>', 'le', false)],
    ['UTF-16LE without BOM, a PI first', utf16('<?pi x?><x/>', 'le', false)],
    ['8-bit bytes declared UTF-16', bytes('<?xml version="1.0" encoding="UTF-16"?><x/>')],
    ['8-bit bytes declared UTF-16LE', bytes("<?xml version='1.0' encoding='utf-16le'?><x/>")],
  ];
  for (const [what, doc] of contradictions) {
    it(`refuses ${what}`, () => {
      assert.throws(() => check(doc), rejects('encoding'));
      assert.throws(() => check(doc, {}, 1), rejects('encoding'), 'byte by byte');
      assert.throws(
        () => check(doc, { contentTypeCharset: 'utf-8' }),
        rejects('encoding'),
        'with a charset',
      );
    });
  }

  it('refuses a BOM-less UTF-16 body whose Content-Type says only "utf-16"', () => {
    const doc = utf16('<?xml version="1.0"?><x/>', 'le', false);
    assert.throws(
      () => check(doc, { contentTypeCharset: 'utf-16' }),
      rejects('encoding', /byte order mark/),
    );
  });

  it('compares a declaration past the 1 KiB sniff window too', () => {
    const doc = `<?xml version="1.0"${' '.repeat(1100)}encoding="ISO-8859-1"?><x/>`;
    assert.throws(() => check(doc), rejects('encoding', /ISO-8859-1/));
    const same = `<?xml version="1.0"${' '.repeat(1100)}encoding="utf-8"?><x/>`;
    assert.equal(check(same).root, 'x');
  });
});

describe('XmlChecker: depth', () => {
  const nested = (depth: number): string => '<a>'.repeat(depth) + '</a>'.repeat(depth);

  it('accepts exactly maxDepth and refuses maxDepth + 1', () => {
    assert.equal(check(nested(10), { maxDepth: 10 }).root, 'a');
    assert.throws(() => check(nested(11), { maxDepth: 10 }), rejects('too-deep', /10/));
    assert.equal(check('<a><b><c/></b></a>', { maxDepth: 3 }).root, 'a');
    assert.throws(() => check('<a><b><c/></b></a>', { maxDepth: 2 }), rejects('too-deep'));
  });

  it('counts depth back down on close tags', () => {
    const wide = `<r>${'<a><b/></a>'.repeat(1000)}</r>`;
    assert.equal(check(wide, { maxDepth: 3 }).root, 'r');
  });

  it('stops a million nested elements quickly in 64 KiB chunks', () => {
    const body = Buffer.alloc(3 * 1_000_000, '<a>');
    const checker = new XmlChecker({ ...DEFAULTS, maxDepth: 256 });
    const started = process.hrtime.bigint();
    let fedChunks = 0;
    assert.throws(() => {
      for (let at = 0; at < body.length; at += 65536) {
        fedChunks++;
        checker.feed(body.subarray(at, at + 65536));
      }
    }, rejects('too-deep'));
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    assert.equal(fedChunks, 1);
    assert.ok(ms < 250, `took ${ms} ms`);
    assert.throws(() => checker.end(), rejects('too-deep'));
  });
});

describe('XmlChecker: DOCTYPE and entities', () => {
  const XXE = '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>';
  const LAUGHS = `<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<lolz>&lol3;</lolz>`;
  const SYSTEM =
    '<?xml version="1.0"?>\n<!DOCTYPE cXML SYSTEM "http://xml.cxml.org/schemas/cXML/1.2.014/cXML.dtd">\n<cXML/>';
  const PUBLIC =
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd"><html/>';

  it('refuses any DOCTYPE by default', () => {
    assert.throws(() => check(SYSTEM), rejects('doctype', /DOCTYPE is not allowed/));
    assert.throws(() => check('<!DOCTYPE a><a/>'), rejects('doctype'));
  });

  it('accepts an external SYSTEM or PUBLIC id when allowed (nothing is fetched)', () => {
    assert.equal(check(SYSTEM, { allowDoctype: true }).root, 'cXML');
    assert.equal(check(PUBLIC, { allowDoctype: true }).root, 'html');
    assert.equal(check('<!DOCTYPE a SYSTEM "odd[1].dtd"><a/>', { allowDoctype: true }).root, 'a');
  });

  it('refuses an internal subset even when DOCTYPE is allowed', () => {
    for (const allowDoctype of [false, true]) {
      assert.throws(
        () => check('<!DOCTYPE a [<!ELEMENT a EMPTY>]><a/>', { allowDoctype }),
        rejects('doctype'),
      );
    }
    assert.throws(
      () => check('<!DOCTYPE a [<!ELEMENT a EMPTY>]><a/>', { allowDoctype: true }),
      rejects('doctype', /internal DTD subset is never allowed/),
    );
  });

  it('refuses XXE and billion laughs without expanding anything', () => {
    for (const allowDoctype of [false, true]) {
      assert.throws(() => check(XXE, { allowDoctype }), rejects('doctype'));
      assert.throws(() => check(LAUGHS, { allowDoctype }), rejects('doctype'));
      assert.throws(() => check(LAUGHS, { allowDoctype }, 7), rejects('doctype'));
    }
  });

  it('refuses an undefined entity, saying so', () => {
    assert.throws(() => check('<a>&nbsp;</a>'), rejects('malformed', /undefined entity/));
    assert.throws(
      () => check('<!DOCTYPE a SYSTEM "a.dtd"><a>&e;</a>', { allowDoctype: true }),
      rejects('malformed', /undefined entity/),
    );
    assert.throws(() => check('<a b="&e;"/>'), rejects('malformed', /undefined entity/));
  });

  it('expands the predefined entities and character references', () => {
    const s = check('<a b="&quot;&#65;">&lt;&gt;&amp;&apos;&quot;&#x4e2d;&#20013;</a>', {
      extract: ['/a', '/a/@b'],
    });
    assert.deepEqual(plain(s), { root: 'a', values: { '/a': `<>&'"中中`, '/a/@b': '"A' } });
  });
});

describe('XmlChecker: extraction', () => {
  const DOC = `<r id="root">
  <item n="1"><name>first</name></item>
  <item n="2"><name>second</name></item>
  <note>a<![CDATA[<b>]]>c &amp; d<i>nested</i>!</note>
  <empty/>
  <deep><x><y>z</y></x></deep>
</r>`;

  it('takes the first matching element and attribute', () => {
    const s = check(DOC, { extract: ['/r/item/name', '/r/item/@n', '/r/@id'] });
    assert.deepEqual(Object.fromEntries(s.values), {
      '/r/item/name': 'first',
      '/r/item/@n': '1',
      '/r/@id': 'root',
    });
  });

  it('concatenates text, CDATA and descendant text, entity-decoded', () => {
    assert.equal(check(DOC, { extract: ['/r/note'] }).values.get('/r/note'), 'a<b>c & dnested!');
  });

  it('gives an empty string for an empty element and leaves unseen paths absent', () => {
    const s = check(DOC, {
      extract: ['/r/empty', '/r/missing', '/r/empty/@x', '/other/item', '/r/deep/x/q'],
    });
    assert.deepEqual(Object.fromEntries(s.values), { '/r/empty': '' });
  });

  it('matches only absolute paths from the root', () => {
    const s = check(DOC, { extract: ['/name', '/item/name', '/r/deep/x/y', '/r/deep/x'] });
    assert.deepEqual(Object.fromEntries(s.values), { '/r/deep/x/y': 'z', '/r/deep/x': 'z' });
  });

  it('finds the first match even after a non-matching sibling subtree of the same name', () => {
    const s = check('<r><a><c>no</c></a><a><b>yes</b></a></r>', { extract: ['/r/a/b'] });
    assert.equal(s.values.get('/r/a/b'), 'yes');
  });

  it('extracts with attribute-only paths (no text handler)', () => {
    const s = check(DOC, { extract: ['/r/item/@n'] });
    assert.deepEqual(Object.fromEntries(s.values), { '/r/item/@n': '1' });
  });

  it('captures only inside the matched element, also byte by byte', () => {
    const doc =
      '<r>before &amp; <![CDATA[cd]]><a>&amp;v<b>&lt;w</b>x</a>after &gt;<c>&#x4e2d;</c><a>second</a></r>';
    const options = { extract: ['/r/a', '/r/a/b', '/r/c'] };
    const expected = { '/r/a': '&v<wx', '/r/a/b': '<w', '/r/c': '中' };
    assert.deepEqual(Object.fromEntries(check(doc, options).values), expected);
    for (const size of [1, 2, 3])
      assert.deepEqual(
        Object.fromEntries(check(doc, options, size).values),
        expected,
        `chunk size ${size}`,
      );
  });

  it('reuses one extract array across documents', () => {
    const extract = ['/xml/MsgType'];
    for (const type of ['text', 'event', 'image']) {
      assert.equal(
        check(`<xml><MsgType><![CDATA[${type}]]></MsgType></xml>`, { extract }).values.get(
          '/xml/MsgType',
        ),
        type,
      );
    }
  });
});

describe('sniffEncoding', () => {
  const sniff = (head: Uint8Array | string, charset?: string, complete = false): string => {
    const r = sniffEncoding(typeof head === 'string' ? utf8.encode(head) : head, charset, complete);
    return r === 'need-more' ? r : r.label;
  };

  it('detects BOMs and BOM-less UTF-16', () => {
    assert.equal(sniff(bytes([0xef, 0xbb, 0xbf])), 'utf-8');
    assert.equal(sniff(bytes([0xfe, 0xff])), 'utf-16be');
    assert.equal(sniff(bytes([0xff, 0xfe])), 'utf-16le');
    assert.equal(sniff(bytes([0x3c, 0x00, 0x3f, 0x00])), 'utf-16le');
    assert.equal(sniff(bytes([0x00, 0x3c, 0x00, 0x3f])), 'utf-16be');
  });

  it('asks for more on partial signatures and decides when complete', () => {
    assert.equal(sniff(''), 'need-more');
    assert.equal(sniff(bytes([0xef, 0xbb])), 'need-more');
    assert.equal(sniff(bytes([0xef, 0xbb]), undefined, true), 'utf-8');
    assert.equal(sniff('<'), 'need-more');
    assert.equal(sniff('<?xm'), 'need-more');
    assert.equal(sniff('<?xml'), 'need-more');
    assert.equal(sniff('<?xml version="1.0" encoding="gbk"'), 'need-more');
    assert.equal(sniff('<?xml version="1.0" encoding="gbk"', undefined, true), 'utf-8');
    assert.equal(sniff('<a'), 'utf-8');
    assert.equal(sniff('<?xml-stylesheet href="a"?>', 'big5'), 'big5');
  });

  it('reads the declaration (single or double quotes), then Content-Type, then utf-8', () => {
    assert.equal(sniff('<?xml version="1.0" encoding="Shift_JIS"?>'), 'shift_jis');
    assert.equal(sniff("<?xml version='1.0' encoding = 'euc-jp' ?>", 'utf-8'), 'euc-jp');
    assert.equal(sniff('<?xml version="1.0"?><a/>', 'windows-1252'), 'windows-1252');
    assert.equal(sniff('<a/>', ' ISO-8859-1 '), 'windows-1252');
    assert.equal(sniff('<a/>'), 'utf-8');
  });

  it('maps every gbk alias to gb18030', () => {
    for (const label of ['gb2312', 'GBK', 'gb_2312-80', 'x-gbk', 'GB18030', 'chinese']) {
      assert.equal(sniff(`<?xml version="1.0" encoding="${label}"?>`), 'gb18030', label);
      assert.equal(sniff('<a/>', label), 'gb18030', label);
    }
  });

  it('stops waiting for ?> after 1024 bytes', () => {
    assert.equal(sniff(`<?xml version="1.0" ${' '.repeat(900)}`), 'need-more');
    assert.equal(sniff(`<?xml version="1.0" ${' '.repeat(1100)}`, 'big5'), 'big5');
  });

  it('throws XmlError(encoding) for unknown labels', () => {
    assert.throws(
      () => sniff('<?xml version="1.0" encoding="nope"?>'),
      rejects('encoding', /"nope"/),
    );
    assert.throws(() => sniff('<a/>', 'nope'), rejects('encoding', /"nope"/));
  });
});
