import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LinkedList, type Linked } from '../../proxy/linked-list.js';

interface Item extends Linked<Item> {
  readonly name: string;
}

const item = (name: string): Item => ({ name, prev: null, next: null });
const names = (list: LinkedList<Item>): string[] => list.toArray().map((i) => i.name);

describe('LinkedList', () => {
  it('keeps items in the order they were added, and takes any of them out', () => {
    const list = new LinkedList<Item>();
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map(item) as [Item, Item, Item, Item];
    for (const i of [a, b, c, d]) list.push(i);
    assert.deepEqual(names(list), ['a', 'b', 'c', 'd']);
    assert.equal(list.size, 4);

    assert.equal(list.remove(b), true); // middle
    assert.equal(list.remove(a), true); // head
    assert.equal(list.remove(d), true); // tail
    assert.deepEqual(names(list), ['c']);
    assert.equal(list.size, 1);
    list.push(a);
    assert.deepEqual(names(list), ['c', 'a']);
    assert.equal(list.remove(c), true); // the head, with one after it
    assert.equal(list.remove(a), true); // the only one
    assert.deepEqual(names(list), []);
    assert.equal(list.size, 0);
  });

  it('clears a removed item\'s links, and ignores what it does not hold', () => {
    const list = new LinkedList<Item>();
    const [a, b, c] = ['a', 'b', 'c'].map(item) as [Item, Item, Item];
    for (const i of [a, b, c]) list.push(i);
    list.remove(b);
    // Nothing taken out points into the list any more (what the list is for: see linked-list.ts).
    assert.deepEqual([b.prev, b.next], [null, null]);
    assert.equal(list.has(b), false);
    assert.equal(list.remove(b), false);
    assert.equal(list.remove(item('stranger')), false);
    assert.equal(list.size, 2);
    // Added twice: still once, where it was.
    list.push(a);
    assert.deepEqual(names(list), ['a', 'c']);
    assert.equal(list.size, 2);
  });

  it('takes out what matches, in order, leaving the rest linked', () => {
    const list = new LinkedList<Item>();
    for (const name of ['x1', 'k1', 'x2', 'x3', 'k2', 'x4']) list.push(item(name));
    const removed = list.removeWhere((i) => i.name.startsWith('x'));
    assert.deepEqual(removed.map((i) => i.name), ['x1', 'x2', 'x3', 'x4']);
    assert.ok(removed.every((i) => i.prev === null && i.next === null));
    assert.deepEqual(names(list), ['k1', 'k2']);
    assert.equal(list.size, 2);
    assert.deepEqual(list.removeWhere(() => true).map((i) => i.name), ['k1', 'k2']);
    assert.equal(list.size, 0);
    assert.deepEqual(list.removeWhere(() => true), []);
  });
});
