# The datasets' md5s and MNIST's mirrors are one list, src/data/mnist_sources.txt, that
# launch/lib/mnist.sh reads too. vae_embed_mnist_sources(TARGET) gives TARGET (whose sources
# include src/data/mnist.cpp) that text as the raw string literal mnist_sources.inc, and
# reconfigures when the list changes.
function(vae_embed_mnist_sources target)
  get_filename_component(list "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/../src/data/mnist_sources.txt" ABSOLUTE)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${list}")
  file(READ "${list}" mnist_sources)
  file(CONFIGURE OUTPUT "${CMAKE_BINARY_DIR}/generated/mnist_sources.inc"
       CONTENT "R\"txt(@mnist_sources@)txt\"\n" @ONLY)
  target_include_directories(${target} PRIVATE "${CMAKE_BINARY_DIR}/generated")
endfunction()
