/**
 * The package's main entry (`wayfinder-discovery`): core's user-facing API with the built-in
 * adapters and balancers registered (loaded on first use). Code that imports core directly gets no
 * built-ins; adapter authors use the `adapter-kit` entry.
 */
import './builtins';

export * from './core';
export { listBuiltins } from './builtins';
