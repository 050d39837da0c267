/**
 * src/postgres/extensions.ts: which extensions need preloading, the Debian package named when one
 * is missing (timescaledb from TimescaleDB's repository, contrib in postgresql-15 itself), and the
 * shared_preload_libraries list edits.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  EXTENSION_NAME,
  extensionFacts,
  gucPrefixOf,
  installAdvice,
  libraryName,
  packageIsGuess,
  parseLibraryList,
  withPreloadLibraries,
} from '../../src/postgres/extensions.js';

void describe('extensionFacts', () => {
  void it('preload and package of the known ones', () => {
    const timescale = extensionFacts('timescaledb');
    assert.equal(timescale.preloadLibrary, 'timescaledb');
    assert.equal(timescale.debianPackage, 'timescaledb-2-postgresql-15');
    assert.match(timescale.packageSource ?? '', /TimescaleDB's apt repository/);
    assert.equal(extensionFacts('pg_stat_statements').preloadLibrary, 'pg_stat_statements');
    assert.equal(extensionFacts('pg_stat_statements').debianPackage, 'postgresql-15');
    assert.equal(extensionFacts('pg_cron').debianPackage, 'postgresql-15-cron');
    assert.equal(extensionFacts('postgis', 16).debianPackage, 'postgresql-16-postgis-3');
    assert.deepEqual(extensionFacts('pg_stat_kcache').alsoPreload, ['pg_stat_statements']);
  });
  void it('contrib and no-preload extensions', () => {
    const crypto = extensionFacts('pgcrypto');
    assert.equal(crypto.preloadLibrary, null);
    assert.equal(crypto.createsExtension, true);
    assert.equal(crypto.debianPackage, 'postgresql-15');
    assert.equal(packageIsGuess('pgcrypto'), false);
    assert.equal(extensionFacts('uuid-ossp').debianPackage, 'postgresql-15');
  });
  void it('modules without an extension are preloaded, not created', () => {
    const explain = extensionFacts('auto_explain');
    assert.equal(explain.createsExtension, false);
    assert.equal(explain.preloadLibrary, 'auto_explain');
  });
  void it('unknown extensions: a guessed package, said to be a guess', () => {
    const facts = extensionFacts('pg_foo_bar');
    assert.equal(facts.debianPackage, 'postgresql-15-pg-foo-bar');
    assert.equal(packageIsGuess('pg_foo_bar'), true);
    assert.match(installAdvice(facts, true), /^install probably Debian package postgresql-15-pg-foo-bar \(find it with: apt-cache search postgresql-15 pg_foo_bar\) on every node/);
    assert.equal(installAdvice(extensionFacts('pg_cron'), false), 'install Debian package postgresql-15-cron on every node, then run this again');
  });
  void it('extension names', () => {
    assert.ok(EXTENSION_NAME.test('uuid-ossp'));
    assert.ok(EXTENSION_NAME.test('pg_stat_statements'));
    assert.ok(!EXTENSION_NAME.test('x; DROP TABLE y'));
    assert.ok(!EXTENSION_NAME.test('"quoted"'));
  });
});

void describe('shared_preload_libraries edits', () => {
  void it('parses lists with spaces, quotes and $libdir', () => {
    assert.deepEqual(parseLibraryList(''), []);
    assert.deepEqual(parseLibraryList(' pg_stat_statements , "auto_explain",$libdir/pg_cron '), ['pg_stat_statements', 'auto_explain', '$libdir/pg_cron']);
    assert.equal(libraryName('$libdir/pg_cron'), 'pg_cron');
  });
  void it('appends what is missing, once, keeping the order (citus first)', () => {
    assert.equal(withPreloadLibraries('', ['pg_stat_statements']), 'pg_stat_statements');
    assert.equal(withPreloadLibraries('pg_stat_statements', ['timescaledb']), 'pg_stat_statements,timescaledb');
    assert.equal(withPreloadLibraries('$libdir/pg_stat_statements', ['pg_stat_statements']), null);
    assert.equal(withPreloadLibraries('auto_explain', ['pg_stat_statements', 'pg_stat_kcache']), 'auto_explain,pg_stat_statements,pg_stat_kcache');
    assert.equal(withPreloadLibraries('pg_stat_statements', ['citus']), 'citus,pg_stat_statements');
  });
  void it('GUC prefixes of libraries', () => {
    assert.equal(gucPrefixOf('pg_cron'), 'cron');
    assert.equal(gucPrefixOf('pg_stat_statements'), 'pg_stat_statements');
  });
});
