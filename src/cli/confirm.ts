/**
 * Interactive confirmation for destructive commands. Without a terminal on stdin there is nobody
 * to ask, so the answer is "no" and the command refuses (the caller's error names `--yes`).
 */
import { createInterface } from 'node:readline/promises';

/** Asks `question` on stderr; true only when the answer (trimmed) equals `expected`. */
export async function askOnTerminal(question: string, expected: (answer: string) => boolean): Promise<boolean> {
  if (!process.stdin.isTTY) return false;
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return expected((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

/** `question` + "Type yes to confirm:". */
export function confirmYes(question: string): Promise<boolean> {
  return askOnTerminal(`${question} Type yes to confirm: `, (answer) => answer === 'yes');
}
