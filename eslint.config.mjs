// ESLint over lib/ (the TypeScript sources): typescript-eslint's recommended rules, with the few
// choices below. `npm run lint` runs it with tsc (noUnusedLocals/Parameters) and the native checks.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'esm/**', 'build/**', 'node_modules/**', 'lib/steps.ts', 'lib/syscalls/**', 'lib/seccomp-prebuilt.ts'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['lib/**/*.ts'],
    rules: {
      // tsc reports unused names (noUnusedLocals, noUnusedParameters); one report is enough.
      '@typescript-eslint/no-unused-vars': 'off',
      // The addon is loaded with require() from a computed path (lib/native.ts).
      '@typescript-eslint/no-require-imports': 'off',
      eqeqeq: ['error', 'always'],
      'no-var': 'error',
      'prefer-const': 'error',
    },
  },
);
