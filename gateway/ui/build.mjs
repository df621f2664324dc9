// Builds the console into dist/: src/main.js bundled with uPlot by esbuild
// (app.js), the page, its style sheet and uPlot's. Nothing is fetched: the
// packages come from node_modules (npm ci, from package-lock.json).
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist);
await build({
  entryPoints: [join(here, 'src/main.js')],
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2020'],
  outfile: join(dist, 'app.js'),
  logLevel: 'warning',
});
copyFileSync(join(here, 'src/index.html'), join(dist, 'index.html'));
copyFileSync(join(here, 'src/app.css'), join(dist, 'app.css'));
copyFileSync(join(here, 'node_modules/uplot/dist/uPlot.min.css'), join(dist, 'uplot.css'));
copyFileSync(join(here, 'src/favicon.svg'), join(dist, 'favicon.svg'));
