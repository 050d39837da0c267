/**
 * Loading configuration files: read, JSON-parse and validate with the zod schema once, reporting
 * every problem with its path in one CONFIG_INVALID error; the result is deep-frozen so nothing
 * downstream can mutate it by accident.
 */
import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import { PgpilotError } from '../shared/errors.js';

export function formatZodIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${issue.message}`)
    .join('; ');
}

export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value as Record<string, unknown>)) deepFreeze(child);
  }
  return value;
}

export function parseConfig<S extends z.ZodType>(schema: S, raw: unknown, source: string): z.infer<S> {
  const result = schema.safeParse(raw);
  if (!result.success) {
    throw new PgpilotError('CONFIG_INVALID', `${source} is invalid: ${formatZodIssues(result.error)}`, {
      hint: `fix ${source}; it is written by pgpilot, so a hand edit is the usual cause`,
    });
  }
  return deepFreeze<z.infer<S>>(result.data);
}

export function loadJsonFile<S extends z.ZodType>(schema: S, path: string): z.infer<S> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new PgpilotError('CONFIG_INVALID', `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, {
      hint: 'check the path and its permissions',
      cause: error,
    });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new PgpilotError('CONFIG_INVALID', `${path} is not valid JSON`, { hint: `fix or restore ${path}`, cause: error });
  }
  return parseConfig(schema, raw, path);
}
