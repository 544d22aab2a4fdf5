// esbuild bundles CSS imports into app.css; for the type checker they are plain side effects.
declare module '*.css';
