/** Anything the lab starts returns something that stops it. */
export interface AsyncDisposableLike {
  dispose(): void | Promise<void>;
}

/**
 * An owner's cleanup list. Items are disposed in reverse order of creation (a rule before the
 * namespace it lives in), each exactly once, and one failure does not stop the others.
 */
export class DisposableStore {
  private readonly items: AsyncDisposableLike[] = [];
  private disposed = false;

  add<T extends AsyncDisposableLike>(item: T): T {
    if (this.disposed) {
      void item.dispose();
      throw new Error('added to a disposed store');
    }
    this.items.push(item);
    return item;
  }

  /** Dispose everything; returns the errors instead of throwing halfway. */
  async dispose(): Promise<unknown[]> {
    if (this.disposed) return [];
    this.disposed = true;
    const errors: unknown[] = [];
    for (const item of this.items.splice(0).reverse()) {
      try {
        await item.dispose();
      } catch (e) {
        errors.push(e);
      }
    }
    return errors;
  }
}
