# Presets and word lists ship inside the binary: a small generator turns the
# resource files into a C++ table (relative name -> bytes) at build time.
add_executable(tsumugi_embed_gen ${CMAKE_SOURCE_DIR}/cmake/embed_gen.cc)
function(tsumugi_embed out files root)
  add_custom_command(OUTPUT ${out}
    COMMAND tsumugi_embed_gen ${out} ${root} ${files}
    DEPENDS tsumugi_embed_gen ${files}
    COMMENT "Embedding resources")
endfunction()
