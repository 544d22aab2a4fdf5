/** Bounded whole numbers with a default: the building blocks of every section's schema. */
import { z } from 'zod';

export const count = (min: number, max: number, def: number) =>
  z.number().int().min(min).max(max).default(def);
export const seconds = count;
export const ms = count;
