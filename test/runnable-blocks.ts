/**
 * The code blocks of a markdown text marked runnable (README.md and docs/), as the docs tests and
 * the consumer test run them:
 *
 *   <!-- runnable -->
 *   ```js
 *   ...
 *   ```
 */
export function runnableBlocks(text: string): { line: number; code: string }[] {
  const blocks: { line: number; code: string }[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== '<!-- runnable -->') continue;
    const fence = lines[i + 1]?.trim();
    if (!fence || !/^```(js|javascript|mjs)$/.test(fence))
      throw new Error(`line ${i + 1}: a runnable marker must be followed by a \`\`\`js fence`);
    const end = lines.findIndex((l, j) => j > i + 1 && l.trim() === '```');
    if (end < 0) throw new Error(`line ${i + 2}: unterminated code block`);
    blocks.push({ line: i + 2, code: lines.slice(i + 2, end).join('\n') });
    i = end;
  }
  return blocks;
}
