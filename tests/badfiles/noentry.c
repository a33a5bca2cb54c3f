/* A plain C library: no plughost entry, no note. */
int noentry_add(int a, int b) {
  return a + b;
}
