/**
 * `{ ...base, ...extra }` for an object made once per connection or query.
 *
 * Node 20's V8 (11.3), for some source objects (a fresh object literal's, an audit event's; not a frozen one's, nor
 * a policy decision's), gives an object made by a spread with properties after it (`{ ...o, x }`, or `{ ...o }` then
 * `o.x = ...`) hidden classes of its own on every call. They outlive the young-generation collections that should
 * take them: about 90 bytes per added property promoted, kept until a full collection, and the call takes 5-30
 * times as long as copying onto an empty literal, whose shared transitions Object.assign follows (measured with
 * `--trace-gc-nvp`: bench/README.md, *What the ~500 bytes per connection are*). node:net's own Socket constructor
 * does this once per socket: that was the ~500 bytes every accepted connection left, until the gateway gave it frozen
 * options (`proxy/frozen-accept.ts`).
 * Typed as Object.assign is: `extra`'s properties are new to `base`, or of the same type as the ones they replace.
 */
export function copyWith<T extends object, E extends object>(base: T, extra: E): T & E {
  return Object.assign({}, base, extra);
}
