/* An ELF executable, not a shared object (gcc builds it as a PIE by default). */
#include <stdio.h>

int main(void) {
  puts("I am a program, not a plugin");
  return 0;
}
