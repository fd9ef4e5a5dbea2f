// Parses a TAP file with tap-parser (the TAP 14 reference parser, from node-tap) and prints
// what it understood as JSON, for tests/it/reports.rs: every test point with its diagnostic
// (YAML parsed), the final counts, lines it could not read as TAP, and parse errors.
// Usage: node check.mjs FILE.tap
import { readFileSync } from 'node:fs'
import { Parser } from 'tap-parser'

const text = readFileSync(process.argv[2], 'utf8')
const out = { version: null, asserts: [], extra: [], comments: [], final: null }
const p = new Parser({ strict: true })
p.on('version', v => { out.version = v })
p.on('assert', a => out.asserts.push({
  id: a.id, ok: a.ok, name: a.name, skip: a.skip, todo: a.todo, diag: a.diag ?? null,
}))
p.on('extra', e => out.extra.push(e))
p.on('comment', c => out.comments.push(c))
p.on('complete', r => {
  out.final = {
    ok: r.ok, count: r.count, pass: r.pass, fail: r.fail, skip: r.skip, todo: r.todo,
    plan: r.plan,
    tapErrors: (r.failures || []).filter(f => f.tapError).map(f => f.tapError),
  }
})
p.end(text)
process.stdout.write(JSON.stringify(out) + '\n')
