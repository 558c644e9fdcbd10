// Runs the conformance kit under node:test against one toy variant (WAYFINDER_TOY), so the kit's own
// tests (conformance.test.ts) check that it passes a good adapter and fails broken ones:
//   WAYFINDER_TOY=noop-remove node --import tsx --test testkit/conformance-toy.node.ts
import { describe, it } from 'node:test';
import { registrarConformance, resolverConformance } from './conformance';
import { toyOptions, type ToyVariant } from './conformance-toy';

const variant = (process.env.WAYFINDER_TOY ?? 'good') as ToyVariant;
resolverConformance({ it, describe, ...toyOptions(variant) });
registrarConformance({ it, describe, ...toyOptions(variant) });
