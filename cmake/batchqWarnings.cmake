# batchq_warnings(<target>): the warning set for batchq's own code.
# -Werror only when BATCHQ_WERROR is on (default: top-level builds), so that a
# parent project with a newer compiler never fails on our warnings.
function(batchq_warnings target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wshadow -Wnon-virtual-dtor
      $<$<COMPILE_LANGUAGE:CXX>:-Wold-style-cast>)
    if(BATCHQ_WERROR)
      target_compile_options(${target} PRIVATE -Werror)
    endif()
  endif()
endfunction()
