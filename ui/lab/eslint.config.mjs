// ESLint for everything under ui/, run from ui/ (the npm scripts `cd ..` first, as a config
// only reaches files below the directory ESLint runs in): the JupyterLab extension's
// TypeScript (lab/src) with typescript-eslint, and the admin and Hub pages' plain ES
// modules (*.js, hub/*.js) in a browser. Layout is prettier's job: eslint-config-prettier
// turns off every rule it covers.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import { defineConfig, globalIgnores } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig(
  globalIgnores(['lab/lib/', 'lab/node_modules/']),
  {
    files: ['*.js', 'hub/*.js'],
    extends: [js.configs.recommended, prettier],
    languageOptions: { globals: globals.browser, sourceType: 'module' }
  },
  {
    files: ['lab/src/**/*.{ts,tsx}'],
    extends: [js.configs.recommended, tseslint.configs.recommended, prettier],
    languageOptions: { globals: globals.browser },
    rules: {
      // JupyterLab's naming: interfaces start with I, private members with _.
      '@typescript-eslint/naming-convention': [
        'error',
        {
          selector: 'interface',
          format: ['PascalCase'],
          custom: { regex: '^I[A-Z]', match: true }
        }
      ],
      '@typescript-eslint/no-unused-vars': ['error', { args: 'none' }],
      curly: ['error', 'all'],
      eqeqeq: 'error',
      'prefer-arrow-callback': ['error', { allowNamedFunctions: true }]
    }
  }
);
