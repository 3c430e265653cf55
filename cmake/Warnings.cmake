# Picky warnings, as errors (after curl's CMake/PickyWarnings.cmake).
set(CS_WARNING_FLAGS
  -Wall -Wextra -Werror
  -Wshadow -Wformat=2 -Wformat-security -Wstrict-prototypes -Wmissing-prototypes
  -Wpointer-arith -Wcast-qual -Wwrite-strings -Wundef -Wvla -Wold-style-definition
  -Wnull-dereference -Wdouble-promotion -Wimplicit-fallthrough
)
function(cs_target_warnings target)
  target_compile_options(${target} PRIVATE ${CS_WARNING_FLAGS})
endfunction()
