#include <cstdio>
int main() { std::puts("pdvm"); return 0; }
