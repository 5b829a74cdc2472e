// Built files go to dist/, which Django collects under /static/app/ (STATICFILES_DIRS) and
// WhiteNoise serves; Django answers /app/* with dist/index.html. `npm run dev` serves the app
// at / with the API proxied to a running `make run` (SLIPWAY_API, default 127.0.0.1:8000).
import { defineConfig } from "vitest/config";

export default defineConfig(({ command }) => ({
  base: command === "build" ? "/static/app/" : "/",
  // esbuild's own JSX transform: no Babel plugin needed.
  esbuild: { jsx: "automatic" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    target: "es2022",
    rollupOptions: {
      onwarn(warning, warn) {
        // react-router marks its modules "use client" for server components; meaningless here.
        if (warning.code === "MODULE_LEVEL_DIRECTIVE") return;
        warn(warning);
      },
    },
  },
  server: {
    proxy: {
      "/api": process.env.SLIPWAY_API ?? "http://127.0.0.1:8000",
    },
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.{ts,tsx}"],
    setupFiles: ["src/test/setup.ts"],
    restoreMocks: true,
  },
}));
