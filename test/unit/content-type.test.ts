/** parseContentType: which request media types count as XML (the README's 415 row) and which charset they name. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseContentType } from '../../src/worker/http/content-type.js';

describe('parseContentType', { timeout: 10_000 }, () => {
  it('accepts application/xml without a charset', () => {
    assert.deepEqual(parseContentType('application/xml'), { xml: true, charset: undefined });
  });

  it('accepts text/xml and extracts its charset', () => {
    assert.deepEqual(parseContentType('text/xml; charset=GBK'), { xml: true, charset: 'GBK' });
  });

  it('accepts application/*+xml types', () => {
    assert.deepEqual(parseContentType('application/soap+xml'), { xml: true, charset: undefined });
    assert.deepEqual(parseContentType('application/atom+xml'), { xml: true, charset: undefined });
    assert.deepEqual(parseContentType('application/soap+xml; charset=utf-8; action="urn:x"'), {
      xml: true,
      charset: 'utf-8',
    });
  });

  it('treats an absent header (uWS reports it as the empty string) as XML', () => {
    assert.deepEqual(parseContentType(''), { xml: true, charset: undefined });
  });

  it('refuses non-XML types', () => {
    assert.equal(parseContentType('application/json').xml, false);
    assert.equal(parseContentType('application/json; charset=utf-8').xml, false);
    assert.equal(parseContentType('text/plain').xml, false);
    assert.equal(parseContentType('text/html').xml, false);
    assert.equal(parseContentType('application/xml-dtd').xml, false);
    assert.equal(parseContentType('application/+xml').xml, false);
    assert.equal(parseContentType('xml').xml, false);
  });

  it('tolerates whitespace before the parameters and a quoted charset', () => {
    assert.deepEqual(parseContentType('text/xml ;charset="utf-8"'), {
      xml: true,
      charset: 'utf-8',
    });
    assert.deepEqual(parseContentType('  application/xml  ;  charset = ISO-8859-1'), {
      xml: true,
      charset: 'ISO-8859-1',
    });
  });

  it('matches the type case-insensitively', () => {
    assert.deepEqual(parseContentType('TEXT/XML; Charset=UTF-8'), { xml: true, charset: 'UTF-8' });
    assert.deepEqual(parseContentType('Application/SOAP+XML'), { xml: true, charset: undefined });
    assert.equal(parseContentType('APPLICATION/JSON').xml, false);
  });

  it('returns no charset when the parameters name none', () => {
    assert.deepEqual(parseContentType('application/xml; boundary=x'), {
      xml: true,
      charset: undefined,
    });
  });
});
